"""`export-settings` and `import-settings`: carry an installation's shared settings to a new host.

Every host of one installation must share the keys (a task's JWT is checked with the secret
that signed it; a connection one host encrypted must decrypt on another), the database and the
broker, and must know where the control host's execution API is. ``export-settings`` on the
control host writes those settings, and nothing else, to a file of root's; ``import-settings``
on the joining host writes the keys to /etc/airflow-systemd/secrets.env and the rest to
/etc/default/airflow, replacing what was there.

Both run as root and move files only; no Airflow is imported. The names that travel are a
fixed list (:data:`SETTINGS`), each value checked to be one plain word: every Airflow unit and
the units' root (``+``) lines run with these two files' environment, so a PYTHONPATH= or
LD_PRELOAD= slipped into a settings file would choose code for root on every host.
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import os
import re
import stat
import sys
import tempfile
import textwrap

from airflow_systemd import plain_file, secrets_file
from airflow_systemd.contract import DEFAULT_ENV_FILE, DEFAULT_GROUP, EXIT_CONFIG, SECRETS_FILE

KEYS = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")
DATABASE = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
EXECUTOR = "AIRFLOW__CORE__EXECUTOR"
BROKER = "AIRFLOW__CELERY__BROKER_URL"
RESULT_BACKEND = "AIRFLOW__CELERY__RESULT_BACKEND"
EXECUTION_API = "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
DAGS_FOLDER = "AIRFLOW__CORE__DAGS_FOLDER"
LOG_PORTS = ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT")
# Everything a settings file may carry, in the order export writes it.
SETTINGS = (*KEYS, DATABASE, EXECUTOR, BROKER, RESULT_BACKEND, EXECUTION_API, DAGS_FOLDER, *LOG_PORTS)
# Connection URLs whose host export points at the control host.
URLS = (DATABASE, BROKER, RESULT_BACKEND)
API_PORT = "AIRFLOW__API__PORT"
DEFAULT_API_PORT = "8080"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

_NAME_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# One word for systemd's EnvironmentFile= parser: no whitespace, quotes or backslash (escapes).
_WORD = re.compile(r"""^[^\s'"\\]+$""")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class SettingsProblem(Exception):
    """A refusal; the message is one line that says why."""


def check_value(name: str, value: str) -> str | None:
    """Why ``value`` cannot be ``name``'s, or None when it can."""
    if name in KEYS:
        return None if secrets_file._TOKEN.match(value) else "not a plain token (letters, digits, _ = -)"
    if not _WORD.match(value) or len(value) > 2000:
        return "not one word (no whitespace, quotes or backslash)"
    if name in (*URLS, EXECUTION_API) and "://" not in value:
        return "not a URL"
    if name == EXECUTION_API and not value.startswith(("http://", "https://")):
        return "not an http:// or https:// URL"
    if name == EXECUTOR and not re.match(r"^[A-Za-z0-9_.,:]+$", value):
        return "not an executor's name"
    if name == DAGS_FOLDER and not value.startswith("/"):
        return "not an absolute path"
    if name in LOG_PORTS and not (value.isdigit() and 0 < int(value) < 65536):
        return "not a port"
    return None


def url_host(host: str) -> str:
    """``host`` as it stands in a URL; refuses what is no host name or address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            raise SettingsProblem(f"--host {host!r} is not a host name or address") from None
        return host
    return f"[{address}]" if address.version == 6 else str(address)


def pointed_at(url: str, host: str) -> str:
    """``url`` with a local host (localhost, 127.0.0.1, ::1) replaced by ``host`` (URL form).

    Another host's services reach the control host's database and broker by its name. A URL
    without a host (a Unix socket) cannot be reached from another host: refused.
    """
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        name, _, port = hostport[1:].partition("]")
    else:
        name, _, port = hostport.partition(":")
        port = ":" + port if port else ""
    if not sep or not name:
        raise SettingsProblem(
            f"{_redacted(url)} names no host (a Unix socket?): other hosts need one they can reach"
        )
    if name.lower() not in LOCAL_HOSTS:
        return url
    return f"{scheme}://{userinfo}{at}{host}{port}{tail}"


def _redacted(url: str) -> str:
    """The URL without its password, for a message."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def assignments(text: str) -> list[tuple[int, str, str] | tuple[int, None, str]]:
    """(line number, name, value) of every line; name None for a line that is no assignment.

    Blank lines and comments (# or ;, as systemd reads them) are left out; surrounding
    whitespace and one pair of quotes around a value are dropped, as systemd does.
    """
    found: list = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        match = _NAME_LINE.match(line)
        if not match:
            found.append((number, None, line))
            continue
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found.append((number, match.group(1), value))
    return found


def _read_root_file(path: str, missing_ok: bool = False) -> str | None:
    """A root-owned file's text, opened without following a link or blocking on a FIFO."""
    try:
        return _read_plain(path)[0]
    except FileNotFoundError:
        if missing_ok:
            return None
        raise SettingsProblem(f"{path} does not exist") from None


def _read_plain(path: str) -> tuple[str, os.stat_result]:
    """plain_file.read, its refusals as SettingsProblem (FileNotFoundError passed on)."""
    try:
        return plain_file.read(path)
    except FileNotFoundError:
        raise
    except plain_file.NotPlain as exc:
        raise SettingsProblem(str(exc)) from None
    except OSError as exc:
        raise SettingsProblem(f"cannot read {path}: {exc.strerror}") from None


def _environment(path: str) -> dict[str, str]:
    """What systemd's EnvironmentFile= makes of ``path`` (the last assignment of a name wins)."""
    text = _read_root_file(path, missing_ok=True) or ""
    return {name: value for _, name, value in assignments(text) if name}


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise SettingsProblem(f"run {command} as root: the settings hold the installation's keys")


# --- export-settings


def settings_of(host: str, secrets: dict[str, str], environment: dict[str, str]) -> dict[str, str]:
    """The settings another host needs to join the installation whose control host is ``host``.

    ``secrets`` and ``environment`` are what secrets.env and /etc/default/airflow set; the
    latter wins, as in the units (read after). airflow.cfg is not read: the airflow user (DAG
    code) can write it, and what it says must not travel to root's files on other hosts.
    """
    host_in_url = url_host(host)
    settings = {}
    for key in KEYS:
        settings[key] = environment.get(key) or secrets.get(key, "")
        if not settings[key]:
            raise SettingsProblem(
                f"{key} is set nowhere: run `airflow-systemd generate-secrets` (root) on this host first"
            )
    database = environment.get(DATABASE, "")
    if not database or database.startswith("sqlite"):
        raise SettingsProblem(
            f"{DATABASE} in /etc/default/airflow names no database server (SQLite cannot be "
            "shared): switch this host to PostgreSQL first"
        )
    executor = environment.get(EXECUTOR, "")
    if "Celery" in executor and not environment.get(BROKER):
        raise SettingsProblem(f"{EXECUTOR}={executor} but {BROKER} is not set: other hosts need the broker")
    for name in (DATABASE, EXECUTOR, BROKER, RESULT_BACKEND):
        if environment.get(name):
            settings[name] = pointed_at(environment[name], host_in_url) if name in URLS else environment[name]
    port = environment.get(API_PORT, DEFAULT_API_PORT)
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise SettingsProblem(f"{API_PORT}={port} is not a port")
    settings[EXECUTION_API] = f"http://{host_in_url}:{port}/execution/"
    for name in (DAGS_FOLDER, *LOG_PORTS):
        if environment.get(name):
            settings[name] = environment[name]
    for name, value in settings.items():
        why = check_value(name, value)
        if why:
            raise SettingsProblem(f"{name} cannot be carried to another host: {why}")
    return {name: settings[name] for name in SETTINGS if name in settings}


def export(path: str, host: str, secrets_path: str = SECRETS_FILE, env_path: str = DEFAULT_ENV_FILE) -> str:
    _require_root("export-settings")
    secrets_text = _read_root_file(secrets_path, missing_ok=True)
    if secrets_text is None:
        raise SettingsProblem(
            f"{secrets_path} does not exist: run `airflow-systemd generate-secrets` (root) on this host first"
        )
    secrets = {name: value for _, name, value in assignments(secrets_text) if name}
    settings = settings_of(host, secrets, _environment(env_path))
    # O_EXCL: never overwrite (a file of someone else's, or one already copied around); 0600
    # from the first byte, so the keys are never readable by others, not even for a moment.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise SettingsProblem(
            f"{path} exists: export-settings never overwrites; remove it or name another"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(f"# Settings of the Airflow installation whose control host is {host}: its keys.\n")
        f.write("# Keep it root's, mode 0600; on the joining host: airflow-systemd import-settings FILE\n")
        f.writelines(f"{name}={value}\n" for name, value in settings.items())
    return f"wrote {len(settings)} settings to {path} (root, 0600): {', '.join(settings)}"


# --- import-settings


def read_settings(path: str) -> dict[str, str]:
    """The settings of an export-settings file, checked; refuses the whole file at the first fault.

    The file must be root's and closed to group and others: its values choose what every Airflow
    process, and the units' root lines, run with (the keys, the database, the executor class),
    so a file another account could have written or read is no proof of anything.
    """
    try:
        text, info = _read_plain(path)  # info: of the file read, not of what the name points at later
    except FileNotFoundError:
        raise SettingsProblem(f"cannot read {path}: it does not exist") from None
    if info.st_uid != 0 or info.st_mode & 0o077:
        raise SettingsProblem(
            f"{path} must belong to root with no access for group or others (it is uid "
            f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}): chown root {path}; chmod 600 {path}"
        )
    settings: dict[str, str] = {}
    for number, name, value in assignments(text):
        where = f"{path} line {number}"
        if name is None:
            raise SettingsProblem(f"{where}: not NAME=value")
        if name not in SETTINGS:
            raise SettingsProblem(f"{where}: {name} is not one of the settings import-settings carries")
        if name in settings:
            raise SettingsProblem(f"{where}: {name} is set twice")
        why = check_value(name, value)
        if why:
            raise SettingsProblem(f"{where}: {name}: {why}")
        settings[name] = value
    if not settings:
        raise SettingsProblem(f"{path} carries no settings")
    return settings


def merged(text: str, values: dict[str, str], dropped: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """``text`` (an environment file) with ``values`` set and ``dropped`` names removed.

    A name's first assignment is replaced where it stands, later ones removed; names not there
    are appended. Comments and every other line are kept. Returns the text and the names dropped.
    """
    lines, done, removed = [], set(), []
    for raw in text.splitlines():
        found = assignments(raw)
        name = found[0][1] if found else None
        if name in dropped:
            removed.append(name)
            continue
        if name in values:
            if name not in done:
                lines.append(f"{name}={values[name]}")
                done.add(name)
            continue
        lines.append(raw)
    missing = [name for name in values if name not in done]
    if missing:
        lines.append("# Set by airflow-systemd import-settings (the installation's shared settings):")
        lines.extend(f"{name}={values[name]}" for name in missing)
    return "\n".join(lines) + "\n", removed


def _replace(path: str, text: str, gid: int) -> None:
    """Write ``path`` as root:``gid`` 0640 at once: a new file renamed over the old one, so that
    a unit starting meanwhile reads the old settings or the new ones, never half of them."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchown(f.fileno(), 0, gid)
            os.fchmod(f.fileno(), 0o640)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def import_(
    path: str, secrets_path: str = SECRETS_FILE, env_path: str = DEFAULT_ENV_FILE, group: str = DEFAULT_GROUP
) -> str:
    _require_root("import-settings")
    settings = read_settings(path)
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise SettingsProblem(f"group {group!r} does not exist") from None
    keys = {name: value for name, value in settings.items() if name in KEYS}
    others = {name: value for name, value in settings.items() if name not in KEYS}
    secrets_path, env_path = os.path.abspath(secrets_path), os.path.abspath(env_path)
    # Everything is read and checked before anything is written: a refusal changes nothing.
    os.makedirs(os.path.dirname(secrets_path), mode=0o755, exist_ok=True)
    for directory in {os.path.dirname(secrets_path), os.path.dirname(env_path)}:
        secrets_file.check_directory(directory)
    secrets_text = _read_root_file(secrets_path, missing_ok=True)
    env_text = _read_root_file(env_path, missing_ok=True) or ""
    if secrets_text is None:
        secrets_text = "# The installation's shared Airflow keys (airflow-systemd import-settings).\n"
    # /etc/default/airflow wins over secrets.env in the units: an older key of this host's
    # there would shadow the imported one, so it goes.
    env_text, shadowing = merged(env_text, others, dropped=tuple(keys))
    secrets_text, _ = merged(secrets_text, keys)
    if keys:
        _replace(secrets_path, secrets_text, gid)
    _replace(env_path, env_text, gid)
    said = f"imported {', '.join(settings)} from {path}"
    if keys:
        said += f"; keys into {secrets_path}"
    said += f"; the rest into {env_path} (both root:{group} 0640)"
    if shadowing:
        said += f"; removed from {env_path}: {', '.join(shadowing)}"
    return said + f". Running units need a restart; remove {path} (it holds the keys)"


# --- the commands

EXIT_STATUS = """\
exit status:
  0   done
  78  refused (not root, a file's owner or mode, a name or value it does not carry, an
      existing output file); one line says why, and nothing was written
"""


def _help(prose: str, examples: str) -> str:
    """Prose paragraphs filled to 92 columns, then the examples and the exit status as written."""
    paragraphs = [textwrap.fill(" ".join(p.split()), 92) for p in prose.strip().split("\n\n")]
    return "\n\n".join(paragraphs) + "\n\n" + examples + "\n" + EXIT_STATUS


EXPORT_HELP = _help(
    f"""
Write the settings another host needs to join this installation to FILE, run as root on the
control host. FILE is created root's with mode 0600 and never overwritten.

It carries the installation's keys (AIRFLOW__CORE__FERNET_KEY, AIRFLOW__API__SECRET_KEY and
AIRFLOW__API_AUTH__JWT_SECRET, from {SECRETS_FILE}) and, from {DEFAULT_ENV_FILE}, the metadata
database (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, required: not SQLite), and where set the
executor, the Celery broker and result backend, AIRFLOW__CORE__DAGS_FOLDER and the log servers'
ports (AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT, AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT).
localhost, 127.0.0.1 and ::1 in the database and broker URLs become NAME;
AIRFLOW__CORE__EXECUTION_API_SERVER_URL becomes http://NAME:PORT/execution/ (PORT:
AIRFLOW__API__PORT, else 8080). airflow.cfg is not read (the airflow user can write it).
""",
    """\
example, on the control host a.example:
  airflow-systemd export-settings --host a.example /root/airflow-settings.env
  scp -p /root/airflow-settings.env root@b.example:/root/
""",
)

IMPORT_HELP = _help(
    f"""
Make this host part of the installation whose settings FILE holds (from export-settings), run
as root on the joining host: the keys go to {SECRETS_FILE}, the other settings replace the
same-named lines of {DEFAULT_ENV_FILE} (or are appended), and a key set there is removed (it
would win over the imported one). Both files stay root:airflow 0640, each replaced at once (a
new file renamed over the old one).

FILE must belong to root with no permission for group or others: its values choose what every
Airflow process, and the units' root lines, run with. Only the names export-settings writes are
accepted ({", ".join(SETTINGS)}), each value one word: a line with any other name
(PYTHONPATH=, LD_PRELOAD=, ...) or a malformed line refuses the whole file, naming the line.
""",
    """\
example, on the joining host b.example:
  airflow-systemd import-settings /root/airflow-settings.env
  airflow-systemd role worker scheduler
  rm /root/airflow-settings.env
""",
)


def _export_command(args: argparse.Namespace) -> int:
    return _run("export-settings", lambda: export(args.file, args.host, args.secrets_file, args.env_file))


def _import_command(args: argparse.Namespace) -> int:
    return _run("import-settings", lambda: import_(args.file, args.secrets_file, args.env_file, args.group))


def _run(command: str, action) -> int:
    try:
        print(action(), file=sys.stderr)
    except (SettingsProblem, secrets_file.SecretsProblem, OSError) as exc:
        print(f"airflow-systemd {command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secrets-file", default=SECRETS_FILE, metavar="PATH", help="default: %(default)s")
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, metavar="PATH", help="default: %(default)s")


def register(subparsers) -> None:
    export_parser = subparsers.add_parser(
        "export-settings",
        help="write the settings and keys a new host needs to join this installation (as root)",
        description=EXPORT_HELP,
    )
    export_parser.add_argument(
        "--host", required=True, metavar="NAME", help="this (the control) host's name, as the others reach it"
    )
    export_parser.add_argument("file", metavar="FILE", help="the file to create (never overwritten)")
    _file_options(export_parser)
    export_parser.set_defaults(func=_export_command)

    import_parser = subparsers.add_parser(
        "import-settings",
        help="join this host to the installation whose export-settings FILE is given (as root)",
        description=IMPORT_HELP,
    )
    import_parser.add_argument("file", metavar="FILE", help="a file of export-settings: root's, mode 0600")
    _file_options(import_parser)
    import_parser.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help="the services' group, which may read them (default: %(default)s)",
    )
    import_parser.set_defaults(func=_import_command)
