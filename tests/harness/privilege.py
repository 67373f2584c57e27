"""Every command an installed unit runs as another account than the service's, and what of
theirs that account could write (issue 10). Used by the system tier (units from install-units)
and the package tier (the .deb's units), each in its own booted machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# What each command that runs as another account than airflow is there for.
WHY_PRIVILEGED = {
    "systemctl": "asks systemd to start the alert (the airflow user may not start units)",
    "python3": "the alert, as the airflow-alert account: reads the journal and alert.conf",
}
# "+" is "privileged" to systemd 252, "full-privileges" later; "!" is "no-setuid", "!!" "ambient".
ELEVATED = {"privileged", "full-privileges", "no-setuid", "ambient"}
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXEC_KEYS = (
    "ExecStartPreEx",
    "ExecStartEx",
    "ExecStartPostEx",
    "ExecStopEx",
    "ExecStopPostEx",
    "ExecReloadEx",
)
_COMMAND = re.compile(r"\{ path=(\S+) ; argv\[\]=(.*?) ; flags=(.*?) ;")
_PACKAGE_DIR = (
    "import importlib.util as u; print(u.find_spec('airflow_systemd').submodule_search_locations[0])"
)
_WRITABLE = (
    "import json, sys\n"
    "from airflow_systemd.install.access import _first_writable\n"
    "print(json.dumps({p: _first_writable([p]) for p in sys.argv[1:]}))\n"
)


def privileged_commands(sb, names: list[str], user: str = "airflow") -> list[tuple[str, str, list[str]]]:
    """(unit, command line, the paths it depends on) for each command of the units ``names``
    that runs as another account than ``user``: the unit's User= is not it, or the command
    has "+", "!" or "!!". A template is read as one instance of it."""
    found = []
    for name in names:
        keys = ["User", "EnvironmentFiles", "WorkingDirectory", *EXEC_KEYS]
        show = sb.exec("systemctl", "show", name.replace("@.", "@x."), *(f"-p{k}" for k in keys)).stdout
        props: dict[str, list[str]] = {}
        for line in show.splitlines():
            key, _, value = line.partition("=")
            props.setdefault(key, []).append(value)
        runs_as = (props.get("User") or [""])[0] or "root"
        env_files = [
            re.sub(r" \(ignore_errors=\w+\)$", "", f) for f in props.get("EnvironmentFiles", []) if f
        ]
        workdir = [w.lstrip("!~-") for w in props.get("WorkingDirectory", []) if w.startswith("/")]
        for key in EXEC_KEYS:
            for value in props.get(key, []):
                for path, argv, flags in _COMMAND.findall(value):
                    if runs_as == user and not ELEVATED & set(flags.split()):
                        continue
                    if not path.startswith("/"):  # systemd's fixed search path, not $PATH
                        path = sb.exec("sh", "-c", f"PATH={SEARCH_PATH} command -v {path}").stdout.strip()
                    paths = [path, *(a for a in argv.split() if a.startswith("/")), *env_files, *workdir]
                    if "-m airflow_systemd" in argv:  # and the code it imports
                        paths.append(sb.exec(path, "-I", "-c", _PACKAGE_DIR).stdout.strip())
                    found.append((name, argv, paths))
    return found


def why(argv: str) -> str | None:
    return next((w for cmd, w in WHY_PRIVILEGED.items() if Path(argv.split()[0]).name == cmd), None)


def writable_by(sb, user: str, python: str, paths: list[str]) -> dict[str, str]:
    """The paths ``user`` could change (the path itself, what is in it, or a directory above
    it), each with what it could write, checked as that user with the installation's own
    check (airflow_systemd.install.access._first_writable)."""
    cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", python, "-I", "-c", _WRITABLE]
    done = sb.exec(*cmd, *sorted(set(paths)))
    return {p: w for p, w in json.loads(done.stdout).items() if w}


def exposure(sb, name: str) -> float:
    out = sb.exec("systemd-analyze", "security", "--no-pager", name.replace("@.", "@x.")).stdout
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)[1])
