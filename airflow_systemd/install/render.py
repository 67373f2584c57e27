"""The systemd units, rendered from their one source in ``unit_files/source/``.

As systemd's own ``units/*.service.in``: each unit has a source file, ``NAME.in``, that holds
what is its own (Description=, its watchdog's bound, its extra environment) and includes what
the units share with ``@include FILE.in@`` lines, so that a shared key and its comment are
written once. ``@NAME@`` stands for what depends on the installation: paths, accounts, the
sandbox's mounts. A line holding nothing but ``@NAME@`` stands for a block of lines, possibly
none. An unknown name or a missing include is an error, never an empty string.

The rendered units for the Debian package's paths are checked in beside the source, in
``unit_files/`` (the .deb installs them; the repository's ``units`` is a symlink there);
tests/unit checks that they are what the source renders. ``install-units`` renders the same
source for a virtualenv, a user and an AIRFLOW_HOME. Timers and the target depend on nothing
of the installation and have no source: they are used as they are.

The files are package data rather than a top-level directory because setuptools can only put
files that sit inside a package into a wheel, and an editable install reads them in place.
"""

from __future__ import annotations

import dataclasses
import os
import re
from importlib import resources

from airflow_systemd.contract import (
    ALERT_CONFIG,
    ALERT_USER,
    DEFAULT_ENV_FILE,
    DEFAULT_GROUP,
    DEFAULT_HOME,
    DEFAULT_USER,
    PACKAGE_VENV,
    SECRETS_FILE,
)
from airflow_systemd.install.sandbox import PROTECTED_HOME_DIRS, Sandbox, plan_sandbox

SOURCE_DIR = "source"
SCHEDULER_UNIT = "airflow-scheduler.service"
TARGET_UNIT = "airflow.target"
# The OnFailure= template; it runs the alert as its own account.
ALERT_UNIT = "airflow-alert@.service"
# Template services: one instance per queue, %i; what their ExecStart= adds for it. Celery
# expands %h (so systemd's %% ahead of it) in the worker's name, distinct per instance.
INSTANCE_ARGUMENTS = {"airflow-celery-worker@.service": " --queues %i --celery-hostname %i@%%h"}

_INCLUDE = re.compile(r"^@include ([\w.-]+)@$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"@([A-Z][A-Z_]*)@")


def unit_files():
    return resources.files("airflow_systemd") / "unit_files"


def template_text(name: str) -> str:
    """A file of unit_files/ as it is (a rendered unit, a timer, the catalog, a template)."""
    return (unit_files() / name).read_text(encoding="utf-8")


def template_path(name: str) -> str:
    return str(unit_files() / name)


def source_path(name: str) -> str:
    return str(unit_files() / SOURCE_DIR / name)


def has_source(name: str) -> bool:
    return (unit_files() / SOURCE_DIR / f"{name}.in").is_file()


def shipped_units() -> list[str]:
    """Every service (template services included) and timer shipped in unit_files, but the
    alert's template, which has a rendering of its own (:func:`render_alert_unit`)."""
    return sorted(
        f.name
        for f in unit_files().iterdir()
        if f.name.startswith("airflow-") and f.name.endswith((".service", ".timer")) and f.name != ALERT_UNIT
    )


def inline(name: str, seen: tuple[str, ...] = ()) -> str:
    """The source file ``name`` with its ``@include FILE@`` lines replaced, recursively."""
    if name in seen:
        raise RuntimeError(f"unit source {name} includes itself")
    try:
        text = (unit_files() / SOURCE_DIR / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeError(f"unit source {seen[-1] if seen else name}: no {name}") from None
    return _INCLUDE.sub(lambda m: inline(m.group(1), (*seen, name)).rstrip("\n"), text)


def substitute(text: str, values: dict[str, str], where: str = "a unit source") -> str:
    """Each ``@NAME@`` replaced by its value, once; a line of just an empty one is dropped."""

    def value(match: re.Match) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise RuntimeError(f"{where}: no value for @{match.group(1)}@") from None

    lines = []
    for line in text.split("\n"):
        whole = _PLACEHOLDER.fullmatch(line)
        if whole and values.get(whole.group(1)) == "":
            continue
        lines.append(_PLACEHOLDER.sub(value, line))
    return "\n".join(lines)


def render_source(name: str, values: dict[str, str]) -> str:
    """The unit ``name`` from ``source/NAME.in``."""
    return substitute(inline(f"{name}.in"), values, f"{name}.in")


def unit_value(path: str) -> str:
    """A path as a unit file setting's value: '%' starts a specifier and must be doubled."""
    return path.replace("%", "%%")


def exec_value(path: str) -> str:
    """In ExecStart= '$' also starts a variable reference."""
    return unit_value(path).replace("$", "$$")


def _paths(paths) -> str:
    return " ".join(unit_value(p) for p in paths)


def sandbox_values(sandbox: Sandbox) -> dict[str, str]:
    """The blocks of sandbox-mounts.in: code (or AIRFLOW_HOME) under /tmp, /home or /root is
    mounted back into the private /tmp or the ProtectHome=tmpfs, as :func:`plan_sandbox` decided."""
    values = {"READ_WRITE_PATHS": "", "PROTECT_HOME": "ProtectHome=yes", "PRIVATE_TMP_BINDS": ""}
    if sandbox.read_write_paths:
        values["READ_WRITE_PATHS"] = (
            "# AIRFLOW_HOME is outside /var/lib, so not a StateDirectory=, and\n"
            "# ProtectSystem=strict needs it listed as writable.\n"
            f"ReadWritePaths={_paths(sandbox.read_write_paths)}"
        )
    if sandbox.bind_private_tmp:
        values["PRIVATE_TMP_BINDS"] = (
            "# The virtualenv or its code is under /tmp or /var/tmp, which PrivateTmp=yes\n"
            "# replaces with empty ones: mount just those paths back, read-only.\n"
            f"BindReadOnlyPaths={_paths(sandbox.bind_private_tmp)}"
        )
    if sandbox.protect_home != "yes":
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
            binds.append(f"BindReadOnlyPaths={_paths(sandbox.bind_read_only)}")
        if sandbox.bind_read_write:
            binds.append(f"BindPaths={_paths(sandbox.bind_read_write)}")
        values["PROTECT_HOME"] = "\n".join(binds)
    return values


# --- the units -----------------------------------------------------------------------------


def render_service(
    name: str,
    *,
    user: str,
    group: str,
    airflow_home: str,
    venv: str,
    env_file: str,
    sandbox: Sandbox,
    secrets_path: str = SECRETS_FILE,
) -> str:
    """An Airflow service (or a timer, which has nothing to render) for this installation."""
    if not has_source(name):
        return template_text(name)
    state = ""
    if sandbox.state_directory is not None:
        state = f"StateDirectory={unit_value(sandbox.state_directory)}\nStateDirectoryMode=0750"
    values = {
        # The unit's name is the entrypoint's subcommand: airflow-scheduler.service runs `scheduler`,
        # airflow-celery-worker@.service `celery-worker`.
        "COMMAND": name.removeprefix("airflow-").removesuffix(".service").removesuffix("@"),
        "ARGUMENTS": INSTANCE_ARGUMENTS.get(name, ""),
        # A template's instances each get their own runtime directory.
        "INSTANCE": "-%i" if name.endswith("@.service") else "",
        "AIRFLOW_SYSTEMD": exec_value(os.path.join(venv, "bin", "airflow-systemd")),
        "USER": user,
        "GROUP": group,
        "AIRFLOW_HOME": unit_value(airflow_home),
        "VENV": unit_value(venv),
        "ENV_FILE": unit_value(env_file),
        "SECRETS_FILE": unit_value(secrets_path),
        "STATE_DIRECTORY": state,
        **sandbox_values(sandbox),
    }
    return render_source(name, values)


def render_scheduler(**kwargs) -> str:
    return render_service(SCHEDULER_UNIT, **kwargs)


def render_alert_unit(
    venv: str,
    alert_config: str = ALERT_CONFIG,
    sandbox: Sandbox | None = None,
    alert_user: str = ALERT_USER,
    alert_group: str | None = None,
) -> str:
    """airflow-alert@.service, running the alert from ``venv``.

    ``sandbox`` is the services' (:func:`plan_sandbox`), less AIRFLOW_HOME, which the alert
    never touches: code under /tmp, /var/tmp, /home or /root is mounted back the same way, or
    its ExecStart= fails (203/EXEC) and no alert is ever sent. None: no code there.
    """
    mounts = Sandbox(None)
    if sandbox is not None:
        mounts = dataclasses.replace(sandbox, read_write_paths=(), bind_read_write=())
    option = "" if alert_config == ALERT_CONFIG else f" --config {exec_value(alert_config)}"
    values = {
        "PYTHON": exec_value(os.path.join(venv, "bin", "python3")),
        "ALERT_CONFIG_OPTION": option,
        "USER": alert_user,
        "GROUP": alert_group or alert_user,
        **sandbox_values(mounts),
    }
    return render_source(ALERT_UNIT, values)


def render_services(**installation) -> dict[str, str]:
    """Every shipped service and timer, by name, for one installation (the keyword
    arguments of :func:`render_service`)."""
    return {name: render_service(name, **installation) for name in shipped_units()}


def render_target() -> str:
    return template_text(TARGET_UNIT)


def package_units() -> dict[str, str]:
    """The units of the Debian package: the source rendered for the package's paths. These
    are the files checked in under unit_files/ (``python -m airflow_systemd.install.render``)."""
    sandbox = plan_sandbox(DEFAULT_HOME, [PACKAGE_VENV])
    services = render_services(
        user=DEFAULT_USER,
        group=DEFAULT_GROUP,
        airflow_home=DEFAULT_HOME,
        venv=PACKAGE_VENV,
        env_file=DEFAULT_ENV_FILE,
        sandbox=sandbox,
    )
    units = {name: text for name, text in services.items() if has_source(name)}
    units[ALERT_UNIT] = render_alert_unit(PACKAGE_VENV)
    return units


if __name__ == "__main__":  # rewrite the checked-in units after a change of their source
    for unit, text in package_units().items():
        with open(template_path(unit), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {template_path(unit)}")
