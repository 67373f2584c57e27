"""What install-units asks the host: the virtualenv's interpreter, the accounts, the paths given.

Each answer either describes the host or refuses (:class:`~.access.Refusal`) with a message
naming the option to fix.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import subprocess
import sys

from airflow_systemd.contract import ALERT_USER
from airflow_systemd.install.access import Refusal
from airflow_systemd.install.render import template_path

# The alert's own account (airflow-alert@.service's User=), from this sysusers.d file.
ALERT_SYSUSERS = "airflow-alert.sysusers"

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


def primary_group(user: str) -> str:
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user  # what systemd-sysusers would create


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


def abspath(path: str, option: str) -> str:
    if any(c.isspace() or c in "\"'\\" for c in path):
        raise Refusal(f"{option} {path!r}: paths with blanks, quotes or backslashes are not supported")
    return os.path.normpath(os.path.abspath(path))
