"""`install-units` and `uninstall-units`: the systemd units for a pip-installed airflow-systemd.

The shipped unit files in ``airflow_systemd/unit_files/`` are the one place where defaults live:
the Debian package installs them as they are (the repository's ``units`` is a symlink to that
directory), and ``install-units`` renders them for a virtualenv, a user and an AIRFLOW_HOME.
They are package data rather than a top-level directory because setuptools can only put files
that sit inside a package into a wheel, and an editable install reads them in place.

Rendering changes only what depends on the host, line by line, and fails loudly if the shipped
unit no longer has a line it expects. Before writing anything, ``install-units`` checks as the
service's user, with the user's groups, that the user can reach every file the service needs:
a unit that cannot exec its ExecStart= would otherwise only fail at ``systemctl start``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from importlib import resources

from airflow_systemd import secrets_file
from airflow_systemd.contract import (
    ALERT_CONFIG as DEFAULT_ALERT_CONFIG,
)
from airflow_systemd.contract import (
    ALERT_CONFIG_TEMPLATE,
    ALERT_USER,
    CATALOG,
    DEFAULT_ENV_FILE,
    DEFAULT_HOME,
    DEFAULT_USER,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    PACKAGE_VENV,
)

MARKER = "# Installed by airflow-systemd install-units"
SCHEDULER_UNIT = "airflow-scheduler.service"
TARGET_UNIT = "airflow.target"
# What `systemctl enable --now` should name, per Airflow major version.
SERVICES_BY_MAJOR = {
    "3": ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server"),
    "2": ("airflow-scheduler", "airflow-triggerer", "airflow-webserver"),
}
TIMERS = ("airflow-db-clean.timer", "airflow-log-clean.timer")
RELAXED_DROP_IN = "hardening-relaxed.conf"
ENV_FILE_TEMPLATE = "airflow.default"
# Alerting: the OnFailure= template, its channels' config, and the journal's message catalog.
ALERT_UNIT = "airflow-alert@.service"
# The alert's own account (airflow-alert@.service's User=), from this sysusers.d file.
ALERT_SYSUSERS = "airflow-alert.sysusers"
# Where the shipped alert unit runs Python: the Debian package's virtualenv.

DEFAULT_UNIT_DIR = "/etc/systemd/system"
# journalctl reads catalogs from both; /usr/lib is the package manager's (the .deb's).
CATALOG_DIRS = ("/usr/local/lib/systemd/catalog", "/usr/lib/systemd/catalog")
DEFAULT_CATALOG_DIR = CATALOG_DIRS[0]

STATE_ROOT = "/var/lib"
# ProtectHome=yes makes these empty and inaccessible.
PROTECTED_HOME_DIRS = ("/home", "/root", "/run/user")
# PrivateTmp=yes gives the service its own, empty, /tmp and /var/tmp.
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp")

# What the venv's own interpreter reports about where it reads code from. find_spec() locates
# a package without importing it, and follows editable installs to their source tree.
_VENV_QUERY = """\
import importlib.metadata, importlib.util, json, os, sys, sysconfig
spec = importlib.util.find_spec("airflow_systemd")
print(json.dumps({
    "executable": os.path.realpath(sys.executable),
    "base_prefix": os.path.realpath(sys.base_prefix),
    "paths": sorted({sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}),
    "package": list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else None,
    "airflow_major": (importlib.metadata.version("apache-airflow").split(".")[0]
                      if importlib.util.find_spec("airflow") else None),
}))
"""


class Refusal(Exception):
    """A problem with the arguments or the host that install-units will not work around."""


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """Where the rendered unit's sandbox must differ from the shipped one."""

    state_directory: str | None  # StateDirectory= value, relative to /var/lib
    read_write_paths: tuple[str, ...] = ()
    protect_home: str = "yes"
    bind_read_only: tuple[str, ...] = ()
    bind_read_write: tuple[str, ...] = ()
    # Code under /tmp or /var/tmp (a checkout there, as CI makes): PrivateTmp=yes gives the
    # service empty ones, so these are mounted back into them, read-only.
    bind_private_tmp: tuple[str, ...] = ()


def template_text(name: str) -> str:
    return (resources.files(__package__) / "unit_files" / name).read_text(encoding="utf-8")


def template_path(name: str) -> str:
    return str(resources.files(__package__) / "unit_files" / name)


def is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _protected_root(path: str) -> str | None:
    return next((d for d in PROTECTED_HOME_DIRS if is_under(path, d)), None)


def _private_tmp_root(path: str) -> str | None:
    return next((d for d in PRIVATE_TMP_DIRS if is_under(path, d)), None)


def _outermost(paths) -> tuple[str, ...]:
    """The paths that are not inside another of them, in order."""
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(is_under(p, o) for o in out):
            out.append(p)
    return tuple(sorted(out))


def plan_sandbox(airflow_home: str, read_only_paths) -> Sandbox:
    """Adapt ProtectSystem=strict / ProtectHome=yes to where the venv and AIRFLOW_HOME live.

    ``read_only_paths`` are what the service must read: the venv, the interpreter's prefix, the
    package's own directory. Under /var/lib, AIRFLOW_HOME stays a StateDirectory= (systemd
    creates it and gives it to the user); elsewhere it has to be listed as writable. A path
    under /home, /root or /run/user is invisible with ProtectHome=yes; ProtectHome=tmpfs then
    hides the rest of those trees and mounts back only the paths needed.
    """
    state_directory = None
    read_write: tuple[str, ...] = ()
    if is_under(airflow_home, STATE_ROOT) and airflow_home != STATE_ROOT:
        state_directory = os.path.relpath(airflow_home, STATE_ROOT)
    elif not _protected_root(airflow_home):
        read_write = (airflow_home,)
    hidden_ro = _outermost(p for p in read_only_paths if _protected_root(p))
    hidden_rw = (airflow_home,) if _protected_root(airflow_home) else ()
    hidden_ro = tuple(p for p in hidden_ro if not any(is_under(p, h) for h in hidden_rw))
    in_tmp = _outermost(p for p in read_only_paths if _private_tmp_root(p))
    if not hidden_ro and not hidden_rw:
        return Sandbox(state_directory, read_write, bind_private_tmp=in_tmp)
    return Sandbox(state_directory, read_write, "tmpfs", hidden_ro, hidden_rw, in_tmp)


def _unit_value(path: str) -> str:
    """A path as a unit file setting's value: '%' starts a specifier and must be doubled."""
    return path.replace("%", "%%")


def _exec_value(path: str) -> str:
    """In ExecStart= '$' also starts a variable reference."""
    return _unit_value(path).replace("$", "$$")


class _Lines:
    """The lines of a unit file, edited by key; a key the template lacks is a bug, not a skip."""

    def __init__(self, text: str, name: str) -> None:
        self.lines = text.splitlines()
        self.name = name

    def index(self, prefix: str) -> int:
        hits = [i for i, line in enumerate(self.lines) if line.startswith(prefix)]
        if len(hits) != 1:
            raise RuntimeError(f"shipped {self.name} has {len(hits)} lines starting {prefix!r}, expected 1")
        return hits[0]

    def set(self, prefix: str, line: str) -> None:
        self.lines[self.index(prefix)] = line

    def remove(self, prefix: str) -> None:
        del self.lines[self.index(prefix)]

    def insert_after(self, prefix: str, new: list[str]) -> None:
        i = self.index(prefix) + 1
        self.lines[i:i] = new

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _header(name: str) -> list[str]:
    return [
        MARKER,
        f"# from {template_path(name)}.",
        "# Re-run install-units rather than editing this file; for local changes",
        f"# use a drop-in: systemctl edit {name}",
        "",
    ]


def shipped_units() -> list[str]:
    """Every service and timer shipped in unit_files (templates with @ excluded)."""
    files = resources.files(__package__) / "unit_files"
    return sorted(
        f.name
        for f in files.iterdir()
        if f.name.startswith("airflow-") and f.name.endswith((".service", ".timer")) and "@" not in f.name
    )


def render_scheduler(**kwargs) -> str:
    return render_service(SCHEDULER_UNIT, **kwargs)


def render_service(
    name: str,
    *,
    user: str,
    group: str,
    airflow_home: str,
    venv: str,
    env_file: str,
    sandbox: Sandbox,
    secrets_path: str = secrets_file.DEFAULT_PATH,
    template: str | None = None,
) -> str:
    """The scheduler unit for this host, from the shipped unit (or ``template``)."""
    unit = _Lines(template if template is not None else template_text(name), name)
    if name.endswith(".timer"):
        return "\n".join(_header(name)) + "\n" + unit.text()
    executable = os.path.join(venv, "bin", "airflow-systemd")
    for i, line in enumerate(unit.lines):
        if line.startswith(("ExecStart=", "ExecStartPre=", "ExecStopPost=")):
            unit.lines[i] = line.replace("/usr/bin/airflow-systemd", _exec_value(executable), 1)
    unit.set("User=", f"User={user}")
    unit.set("Group=", f"Group={group}")
    unit.set("Environment=AIRFLOW_HOME=", f"Environment=AIRFLOW_HOME={_unit_value(airflow_home)}")
    for key in ("Environment=VIRTUAL_ENV=", "Environment=PATH="):  # the activated virtualenv
        unit.set(key, unit.lines[unit.index(key)].replace(PACKAGE_VENV, _unit_value(venv)))
    unit.set("EnvironmentFile=-/etc/default/airflow", f"EnvironmentFile=-{_unit_value(env_file)}")
    unit.set(f"EnvironmentFile=-{secrets_file.DEFAULT_PATH}", f"EnvironmentFile=-{_unit_value(secrets_path)}")
    if sandbox.state_directory is not None:
        unit.set("StateDirectory=", f"StateDirectory={_unit_value(sandbox.state_directory)}")
    else:
        unit.remove("StateDirectoryMode=")
        unit.remove("StateDirectory=")
    if sandbox.read_write_paths:
        unit.insert_after(
            "ProtectSystem=",
            [
                "# AIRFLOW_HOME is outside /var/lib, so not a StateDirectory=, and",
                "# ProtectSystem=strict needs it listed as writable.",
                "ReadWritePaths=" + " ".join(_unit_value(p) for p in sandbox.read_write_paths),
            ],
        )
    _mount_code_back(unit, sandbox)
    return "\n".join(_header(name)) + "\n" + unit.text()


def _mount_code_back(unit: _Lines, sandbox: Sandbox) -> None:
    """Where the code (or AIRFLOW_HOME) is under /tmp, /home or /root: mount it back into the
    private /tmp or the ProtectHome=tmpfs, as :func:`plan_sandbox` decided."""
    if sandbox.bind_private_tmp:
        unit.insert_after("PrivateTmp=", _private_tmp_binds(sandbox))
    if sandbox.protect_home == "yes":
        return
    binds = [
        "# The virtualenv or AIRFLOW_HOME is under /home, /root or /run/user:",
        "# ProtectHome=tmpfs replaces those trees with empty ones and only the",
        "# paths below are mounted back into them (read-only but AIRFLOW_HOME).",
        "# TemporaryFileSystem= repeats it with the documented read-only mode,",
        "# which systemd before v257 leaves out (systemd issue #34825).",
        f"ProtectHome={sandbox.protect_home}",
        "TemporaryFileSystem=" + " ".join(f"{d}:ro" for d in PROTECTED_HOME_DIRS),
    ]
    if sandbox.bind_read_only:
        binds.append("BindReadOnlyPaths=" + " ".join(_unit_value(p) for p in sandbox.bind_read_only))
    if sandbox.bind_read_write:
        binds.append("BindPaths=" + " ".join(_unit_value(p) for p in sandbox.bind_read_write))
    i = unit.index("ProtectHome=")
    unit.lines[i : i + 1] = binds


def _private_tmp_binds(sandbox: Sandbox) -> list[str]:
    return [
        "# The virtualenv or its code is under /tmp or /var/tmp, which PrivateTmp=yes",
        "# replaces with empty ones: mount just those paths back, read-only.",
        "BindReadOnlyPaths=" + " ".join(_unit_value(p) for p in sandbox.bind_private_tmp),
    ]


def render_alert_unit(
    venv: str,
    alert_config: str = DEFAULT_ALERT_CONFIG,
    sandbox: Sandbox | None = None,
    alert_user: str = ALERT_USER,
) -> str:
    """airflow-alert@.service, running the alert from ``venv``.

    ``sandbox`` is the services' (:func:`plan_sandbox`), less AIRFLOW_HOME, which the alert
    never touches: code under /tmp, /var/tmp, /home or /root is mounted back the same way, or
    its ExecStart= fails (203/EXEC) and no alert is ever sent. None: no code there.
    """
    unit = _Lines(template_text(ALERT_UNIT), ALERT_UNIT)
    python = os.path.join(venv, "bin", "python3")
    unit.set(
        "ExecStart=",
        unit.lines[unit.index("ExecStart=")].replace(f"{PACKAGE_VENV}/bin/python3", _exec_value(python), 1),
    )
    if alert_user != ALERT_USER:
        unit.set("User=", f"User={alert_user}")
        unit.set("Group=", f"Group={_primary_group(alert_user)}")
    if sandbox is not None:
        _mount_code_back(unit, dataclasses.replace(sandbox, bind_read_write=()))
    return with_alert_config("\n".join(_header(ALERT_UNIT)) + "\n" + unit.text(), alert_config)


def with_alert_config(text: str, alert_config: str) -> str:
    """Point the alert unit's command at ``alert_config`` when it is not the default."""
    if alert_config == DEFAULT_ALERT_CONFIG:
        return text
    option = f" --config {_exec_value(alert_config)}"
    lines = [
        line + option if line.startswith("ExecStart=") and " alert %i" in line else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


def _primary_group(user: str) -> str:
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user  # what systemd-sysusers would create


def render_catalog() -> str:
    return f"{MARKER}\n" + template_text(CATALOG)


def render_target() -> str:
    return "\n".join(_header(TARGET_UNIT)) + "\n" + template_text(TARGET_UNIT)


# --- checks --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Account:
    user: str
    uid: int
    group: str
    gid: int

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.user, self.gid)


def resolve_account(user: str, group: str | None) -> Account:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise Refusal(
            f"user {user!r} does not exist: create it first, e.g. with "
            f"systemd-sysusers {template_path('airflow.sysusers')} (creates 'airflow'), "
            f"or useradd --system --home-dir /var/lib/airflow --shell /usr/sbin/nologin {user}"
        ) from None
    if group is None:
        try:
            group = grp.getgrgid(pw.pw_gid).gr_name
        except KeyError:
            raise Refusal(f"the primary group {pw.pw_gid} of user {user!r} does not exist") from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise Refusal(f"group {group!r} does not exist") from None
    return Account(user, pw.pw_uid, group, gid)


_MODE_WORDS = {
    os.R_OK: "read",
    os.R_OK | os.X_OK: "read and execute",
    os.R_OK | os.W_OK | os.X_OK: "read, write and enter",
    os.X_OK: "execute",
}


@dataclasses.dataclass(frozen=True)
class Need:
    """``account`` must have ``mode`` access to ``path``, reaching it from ``anchor``.

    The anchor is "/" for a path the service sees where the host has it; for a path mounted back
    into ProtectHome's tmpfs it is the mounted directory, because the directories above it are
    the tmpfs's, which anyone may enter, and not the host's /root or /home/USER.
    """

    path: str
    mode: int
    anchor: str = "/"
    what: str = ""


def _first_denied(need: Need, anchor_fd: int) -> str | None:
    rel = os.path.relpath(need.path, need.anchor)
    rel = "" if rel == "." else rel
    if os.access(rel or ".", need.mode, dir_fd=anchor_fd):
        return None
    if not os.access(".", os.X_OK, dir_fd=anchor_fd):
        return f"cannot enter {need.anchor}"
    current = ""
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        if not os.access(current, os.X_OK, dir_fd=anchor_fd):
            return f"cannot enter {os.path.join(need.anchor, current)}"
    return f"cannot {_MODE_WORDS.get(need.mode, 'access')} {need.path}"


def check_access(account: Account, needs: list[Need]) -> None:
    """Refuse unless ``account`` can access every need; tested as that user, in a child process.

    Only root can take another identity; anyone else can only check for themself, and for
    another user (a --dry-run, say) the check is skipped with a warning.
    """
    for need in needs:
        if not os.path.lexists(need.path):
            raise Refusal(f"{need.what or need.path} does not exist: {need.path}")
    if os.geteuid() != 0 and account.uid != os.geteuid():
        print(
            f"warning: not root, so cannot check what user {account.user} can access",
            file=sys.stderr,
        )
        return
    anchors = {n.anchor: os.open(n.anchor, os.O_PATH | os.O_DIRECTORY) for n in needs}
    try:
        problem = _as_user(account, lambda: _first_problem(needs, anchors))
    finally:
        for fd in anchors.values():
            os.close(fd)
    if problem:
        raise Refusal(f"user {account.user} {problem}")


def _first_problem(needs: list[Need], anchors: dict[str, int]) -> str | None:
    for need in needs:
        denied = _first_denied(need, anchors[need.anchor])
        if denied:
            return f"{denied}" + (f" (needed for {need.what})" if need.what else "")
    return None


def _as_user(account: Account, fn) -> str | None:
    """Run ``fn`` with the account's uid, gid and groups; returns its result (a str or None)."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            os.setgroups(account.groups)
            os.setgid(account.gid)
            os.setuid(account.uid)
            os.write(write_end, json.dumps(fn()).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps(f"could not be checked: {exc}").encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else "could not be checked: the check process died"


def _first_writable(paths: list[str]) -> str | None:
    """The first path the calling user could change: in ``paths``, in them, or above them.

    Meant to run as the service's user (:func:`_as_user`). A sticky directory (/tmp) lets no
    one swap the entries of others, so it does not count.
    """
    for top in paths:
        parent = os.path.dirname(top)
        while parent not in ("/", ""):
            try:
                sticky = os.stat(parent).st_mode & stat.S_ISVTX
            except PermissionError:  # cannot reach it, so cannot change it either
                sticky = True
            if not sticky and os.access(parent, os.W_OK):
                return parent
            parent = os.path.dirname(parent)
        if not os.path.isdir(top):
            if os.path.lexists(top) and not os.path.islink(top) and os.access(top, os.W_OK):
                return top
            continue
        for root, _dirs, files in os.walk(top):
            if os.access(root, os.W_OK):
                return root
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path) and os.access(path, os.W_OK):
                    return path
    return None


def refuse_code_writable_by(account: Account, paths: list[str]) -> None:
    """Refuse code that the service's user could change.

    The alert runs from the virtualenv as its own account (airflow-alert@.service): code the
    service's user could change would let anything running as that user (DAG code) run code
    as that account, and read the alert channels' secrets.
    """
    if os.geteuid() != 0 and account.uid != os.geteuid():
        return  # check_access has warned already
    path = _as_user(account, lambda: _first_writable(paths))
    if path:
        raise Refusal(
            f"user {account.user} can write to {path}: the alert runs airflow-systemd from this "
            f"virtualenv as the account {ALERT_USER}, so {account.user} could run code as "
            "another account. Create the virtualenv, and install airflow-systemd, as root."
        )


def refuse_path_writable_by(account: Account, path: str, option: str) -> None:
    """Refuse a file of the units' that the service's user could change (or create).

    The units read the environment files for their ``+`` (root) lines too, and the alert's
    account reads alert.conf: a line DAG code added there would choose code for them.
    """
    if os.geteuid() != 0 and account.uid != os.geteuid():
        return  # check_access has warned already
    # A file that does not exist yet: whoever can write its directory can create it.
    checked = path if os.path.lexists(path) else os.path.dirname(path)
    found = _as_user(account, lambda: _first_writable([checked]))
    if found:
        raise Refusal(
            f"{option} {path}: user {account.user} can write to {found}, and the units read it as "
            "root or as the alert's account: choose a place only root can change"
        )


def ensure_alert_user(name: str) -> int:
    """The group id of the alert's account; the default one is created (systemd-sysusers)."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name).pw_gid
    if name != ALERT_USER:
        raise Refusal(f"--alert-user {name!r} does not exist: create it, in the systemd-journal group")
    try:
        subprocess.run(["systemd-sysusers", template_path(ALERT_SYSUSERS)], check=True, capture_output=True)
        print(f"created the user {name} (systemd-sysusers {template_path(ALERT_SYSUSERS)})", file=sys.stderr)
        return pwd.getpwnam(name).pw_gid
    except (OSError, subprocess.CalledProcessError, KeyError) as exc:
        raise RuntimeError(f"could not create the user {name}: {exc}") from None


def query_venv(venv: str) -> dict:
    python = os.path.join(venv, "bin", "python")
    try:
        result = subprocess.run([python, "-I", "-c", _VENV_QUERY], capture_output=True, text=True, timeout=60)
        info = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise Refusal(f"cannot run {python}: {exc}") from None
    if info is None:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise Refusal(f"cannot run {python}: {last}")
    if not info["package"]:
        raise Refusal(f"airflow-systemd is not installed in the virtualenv {venv} (--venv)")
    return info


def _abspath(path: str, option: str) -> str:
    if any(c.isspace() or c in "\"'\\" for c in path):
        raise Refusal(f"{option} {path!r}: paths with blanks, quotes or backslashes are not supported")
    return os.path.normpath(os.path.abspath(path))


def _refuse_private_tmp(path: str, option: str) -> None:
    for tmp in PRIVATE_TMP_DIRS:
        if is_under(path, tmp):
            raise Refusal(f"{option} {path} is under {tmp}, which the service cannot see (PrivateTmp=yes)")


def _anchor(path: str, sandbox: Sandbox) -> str:
    for root in sandbox.bind_read_only + sandbox.bind_read_write + sandbox.bind_private_tmp:
        if is_under(path, root):
            return root
    return "/"


# --- commands ------------------------------------------------------------------------------


def _systemd_booted() -> bool:
    return os.path.isdir("/run/systemd/system")


def _systemctl(*args: str) -> None:
    try:
        subprocess.run(["systemctl", *args], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"systemctl {' '.join(args)} failed: {exc}") from None


def _is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(line.rstrip("\n") == MARKER for line in f)
    except OSError:
        return False


def install_units(args: argparse.Namespace) -> int:
    try:
        return _install(args)
    except Refusal as exc:
        print(f"airflow-systemd install-units: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, RuntimeError) as exc:
        print(f"airflow-systemd install-units: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _install(args: argparse.Namespace) -> int:
    venv = _abspath(args.venv, "--venv")
    home = _abspath(args.airflow_home, "--airflow-home")
    unit_dir = _abspath(args.unit_dir, "--unit-dir")
    env_file = _abspath(args.env_file, "--env-file")
    account = resolve_account(args.user, args.group)
    if not os.path.isdir(unit_dir):
        raise Refusal(f"--unit-dir {unit_dir} is not a directory")

    executable = os.path.join(venv, "bin", "airflow-systemd")
    # First what the service execs, so that a venv the user cannot reach is named as such
    # before its interpreter is asked anything.
    early = plan_sandbox(home, [venv, os.path.realpath(venv)])
    check_access(
        account,
        [
            Need(venv, os.R_OK | os.X_OK, _anchor(venv, early), "the virtualenv (--venv)"),
            Need(executable, os.R_OK | os.X_OK, _anchor(executable, early), "ExecStart="),
        ],
    )
    info = query_venv(venv)
    code = [venv, os.path.realpath(venv), info["base_prefix"], *info["package"]]
    # Code there is mounted back (plan_sandbox); state there would vanish with the service.
    _refuse_private_tmp(home, "--airflow-home")
    sandbox = plan_sandbox(home, code)
    needs = [
        Need(p, os.R_OK | os.X_OK, _anchor(p, sandbox), what)
        for p, what in [
            (venv, "the virtualenv (--venv)"),
            (executable, "ExecStart="),
            (info["executable"], "the virtualenv's interpreter"),
            *((p, "the Python library") for p in info["paths"] if os.path.isdir(p)),
            *((p, "the airflow_systemd package") for p in info["package"]),
        ]
    ]
    if sandbox.state_directory is None:
        needs.append(
            Need(home, os.R_OK | os.W_OK | os.X_OK, _anchor(home, sandbox), "AIRFLOW_HOME (--airflow-home)")
        )
    check_access(account, needs)
    refuse_code_writable_by(account, [venv, *info["package"]])
    alert_config = _abspath(args.alert_config, "--alert-config")
    catalog_dir = _abspath(args.catalog_dir, "--catalog-dir")
    secrets_path = _abspath(args.secrets_file, "--secrets-file")
    for path, option in (
        (secrets_path, "--secrets-file"),
        (env_file, "--env-file"),
        (alert_config, "--alert-config"),
    ):
        refuse_path_writable_by(account, path, option)

    rendered = {
        os.path.join(unit_dir, name): render_service(
            name,
            user=account.user,
            group=account.group,
            airflow_home=home,
            venv=venv,
            env_file=env_file,
            sandbox=sandbox,
            secrets_path=secrets_path,
        )
        for name in shipped_units()
    }
    rendered[os.path.join(unit_dir, TARGET_UNIT)] = render_target()
    rendered[os.path.join(unit_dir, ALERT_UNIT)] = render_alert_unit(
        venv, alert_config, sandbox, args.alert_user
    )
    rendered[os.path.join(catalog_dir, CATALOG)] = render_catalog()
    if args.dry_run:
        for path, text in rendered.items():
            print(f"# ---- {path}")
            print(text, end="")
        return EXIT_OK

    for path in rendered:
        if os.path.exists(path) and not _is_ours(path) and not args.force:
            raise Refusal(
                f"{path} exists and was not written by install-units (no {MARKER!r} line): "
                "move it away or pass --force"
            )
    alert_gid = ensure_alert_user(args.alert_user)
    try:
        said = secrets_file.ensure(
            secrets_path, account.group, take_over=os.path.join(home, os.path.basename(secrets_file.OLD_PATH))
        )
    except secrets_file.SecretsProblem as exc:
        raise Refusal(f"--secrets-file {secrets_path}: {exc}") from None
    print(said, file=sys.stderr)
    os.makedirs(catalog_dir, mode=0o755, exist_ok=True)
    for path, text in rendered.items():
        _write(path, text, 0o644)
        print(f"wrote {path}", file=sys.stderr)
    if not os.path.exists(env_file):
        _write(env_file, template_text(ENV_FILE_TEMPLATE), 0o600)
        print(f"wrote {env_file} (a template: set the database there)", file=sys.stderr)
    if not os.path.exists(alert_config):
        os.makedirs(os.path.dirname(alert_config), mode=0o755, exist_ok=True)
        _write(alert_config, template_text(ALERT_CONFIG_TEMPLATE), 0o640)
        print(f"wrote {alert_config} (a template: set the alert channels there)", file=sys.stderr)
    # Readable by the alert's account and root only, also when an older version left it 0600.
    os.chown(alert_config, 0, alert_gid)
    os.chmod(alert_config, 0o640)
    _update_catalog(catalog_dir)

    if args.no_reload:
        pass
    elif _systemd_booted():
        _systemctl("daemon-reload")
    else:
        print("systemd is not running here: skipped systemctl daemon-reload", file=sys.stderr)
    print(
        f"next: systemctl enable --now {TARGET_UNIT} "
        f"{' '.join(SERVICES_BY_MAJOR.get(info.get('airflow_major', '3'), SERVICES_BY_MAJOR['3']))} "
        f"{' '.join(TIMERS)}\n"
        f"tasks that need sudo, a JIT or namespaces: see {template_path(RELAXED_DROP_IN)}",
        file=sys.stderr,
    )
    return EXIT_OK


def _update_catalog(catalog_dir: str) -> None:
    """Rebuild journalctl's catalog index, so that `journalctl -x` explains our events."""
    if catalog_dir not in CATALOG_DIRS:
        print(
            f"journalctl reads no catalog in {catalog_dir}: skipped journalctl --update-catalog",
            file=sys.stderr,
        )
        return
    try:
        subprocess.run(["journalctl", "--update-catalog"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"warning: journalctl --update-catalog failed: {exc}", file=sys.stderr)


def _write(path: str, text: str, mode: int) -> None:
    """Atomically, so that a daemon-reload never sees half a unit."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def uninstall_units(args: argparse.Namespace) -> int:
    unit_dir = os.path.abspath(args.unit_dir)
    try:
        names = sorted(os.listdir(unit_dir))
    except OSError as exc:
        print(f"airflow-systemd uninstall-units: --unit-dir {unit_dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    ours = [
        n
        for n in names
        if n.startswith("airflow")
        and os.path.isfile(os.path.join(unit_dir, n))
        and not os.path.islink(os.path.join(unit_dir, n))
        and _is_ours(os.path.join(unit_dir, n))
    ]
    if not ours:
        print(f"nothing to remove: no unit in {unit_dir} was written by install-units", file=sys.stderr)
        return EXIT_OK
    catalog_dir = os.path.abspath(args.catalog_dir)
    catalog = os.path.join(catalog_dir, CATALOG)
    files = [os.path.join(unit_dir, n) for n in ours]
    if _is_ours(catalog) and catalog not in files:
        files.append(catalog)
    if args.dry_run:
        for path in files:
            print(path)
        return EXIT_OK
    use_systemctl = not args.no_reload and _systemd_booted()
    try:
        if use_systemctl:
            _systemctl("disable", "--now", *(n for n in ours if "@." not in n))  # not templates
        for path in files:
            os.unlink(path)
            print(f"removed {path}", file=sys.stderr)
        if catalog in files:
            _update_catalog(catalog_dir)
        if use_systemctl:
            _systemctl("daemon-reload")
    except (OSError, RuntimeError) as exc:
        print(f"airflow-systemd uninstall-units: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        "kept: the environment file, AIRFLOW_HOME, /var/log/airflow, drop-ins "
        f"({unit_dir}/{SCHEDULER_UNIT}.d), {DEFAULT_ALERT_CONFIG} and the alert state",
        file=sys.stderr,
    )
    return EXIT_OK


INSTALL_HELP = f"""\
Write the Airflow units (every service and timer shipped beside
{template_path(SCHEDULER_UNIT)}) and {TARGET_UNIT} into --unit-dir for this virtualenv,
then run systemctl daemon-reload. The units are the shipped ones,
with ExecStart= pointing into the virtualenv, and User=, Group=, AIRFLOW_HOME and
EnvironmentFile= set from the options. The sandbox (ProtectSystem=strict,
ProtectHome=yes) is adapted: an AIRFLOW_HOME outside /var/lib becomes a ReadWritePaths=,
a virtualenv or AIRFLOW_HOME under /home or /root is mounted back into ProtectHome=tmpfs.
A missing --env-file is created from a commented template (mode 0600).
The installation's shared Airflow keys go to --secrets-file (root:GROUP 0640), once:
an existing file is kept, one that an older version left in AIRFLOW_HOME is taken over.

Alerting: {ALERT_UNIT}, started by each unit after every run and by its
OnFailure=, runs as --alert-user (created with systemd-sysusers if it is the default
{ALERT_USER}); the alert channels in --alert-config (a commented template if
missing; root:{ALERT_USER} 0640 either way) and the journal's message catalog
{CATALOG} in --catalog-dir, indexed with journalctl --update-catalog.

Before writing, it checks as --user, with that user's groups, that the user can reach
the virtualenv, its interpreter, its Python library and AIRFLOW_HOME: every directory on
the way must let the user in; that the user cannot change the virtualenv or the
airflow-systemd code, which the alert runs as another account; and that it cannot
change --env-file, --secrets-file or --alert-config, which root and the alert's account
read. DAG code runs as --user. It refuses (exit 78) naming the first path that fails,
and when a user or group does not exist.

Then, for Airflow 3: systemctl enable --now {TARGET_UNIT} {" ".join(SERVICES_BY_MAJOR["3"])}
(Airflow 2.10: {" ".join(SERVICES_BY_MAJOR["2"])}), and the timers {" ".join(TIMERS)}.
Tasks that need sudo (run_as_user), a JIT (java, node) or namespaces: copy
{template_path(RELAXED_DROP_IN)} into /etc/systemd/system/{SCHEDULER_UNIT}.d/.

exit status: 0 written, 1 could not write or reload, 78 refused (nothing written)
"""

UNINSTALL_HELP = f"""\
Stop and disable the units that install-units wrote into --unit-dir, remove them and run
systemctl daemon-reload. Only files carrying the line
  {MARKER}
are touched, and the message catalog in --catalog-dir. The environment file,
AIRFLOW_HOME, the logs, any drop-in directory, the alert channels and the alert state
are kept.
"""


def register(subparsers) -> None:
    """Add ``install-units`` and ``uninstall-units`` to the ``airflow-systemd`` command."""
    install = subparsers.add_parser(
        "install-units",
        help="write the systemd units for this virtualenv (pip installs; the .deb ships its own)",
        description=INSTALL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    install.add_argument(
        "--user", default=DEFAULT_USER, help="the account the service runs as (default: %(default)s)"
    )
    install.add_argument("--group", default=None, help="its group (default: the user's primary group)")
    install.add_argument(
        "--airflow-home",
        default=DEFAULT_HOME,
        metavar="PATH",
        help="AIRFLOW_HOME of the service; under /var/lib systemd creates it (default: %(default)s)",
    )
    install.add_argument(
        "--venv",
        default=sys.prefix,
        metavar="PATH",
        help="the virtualenv airflow-systemd is installed in (default: this one, %(default)s)",
    )
    install.add_argument(
        "--unit-dir", default=DEFAULT_UNIT_DIR, metavar="DIR", help="where to write (default: %(default)s)"
    )
    install.add_argument(
        "--env-file",
        default=DEFAULT_ENV_FILE,
        metavar="PATH",
        help="the EnvironmentFile= of the unit, created from a template if missing (default: %(default)s)",
    )
    install.add_argument(
        "--alert-config",
        default=DEFAULT_ALERT_CONFIG,
        metavar="PATH",
        help="the alert channels, created from a template if missing (default: %(default)s)",
    )
    install.add_argument(
        "--secrets-file",
        default=secrets_file.DEFAULT_PATH,
        metavar="PATH",
        help="the installation's shared Airflow keys, created if missing, root:GROUP 0640 "
        "(default: %(default)s)",
    )
    install.add_argument(
        "--alert-user",
        default=ALERT_USER,
        metavar="USER",
        help="the account the alerts run as, created if it is the default and missing (default: %(default)s)",
    )
    install.add_argument(
        "--catalog-dir",
        default=DEFAULT_CATALOG_DIR,
        metavar="DIR",
        help="where the journal's message catalog goes (default: %(default)s)",
    )
    install.add_argument("--dry-run", action="store_true", help="print the rendered units, write nothing")
    install.add_argument("--no-reload", action="store_true", help="do not run systemctl daemon-reload")
    install.add_argument(
        "--force", action="store_true", help="overwrite unit files that install-units did not write"
    )
    install.set_defaults(func=install_units)

    uninstall = subparsers.add_parser(
        "uninstall-units",
        help="stop, disable and remove the units install-units wrote",
        description=UNINSTALL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    uninstall.add_argument(
        "--unit-dir", default=DEFAULT_UNIT_DIR, metavar="DIR", help="where they are (default: %(default)s)"
    )
    uninstall.add_argument(
        "--catalog-dir",
        default=DEFAULT_CATALOG_DIR,
        metavar="DIR",
        help="where install-units put the message catalog (default: %(default)s)",
    )
    uninstall.add_argument("--dry-run", action="store_true", help="list what would be removed")
    uninstall.add_argument(
        "--no-reload", action="store_true", help="do not call systemctl (no stop, disable or reload)"
    )
    uninstall.set_defaults(func=uninstall_units)
