"""Where the units' sandbox must give way: ProtectSystem=strict, ProtectHome=yes and
PrivateTmp=yes hide or freeze the very paths a virtualenv or an AIRFLOW_HOME may live in.

:func:`plan_sandbox` decides, from those paths, what a rendered unit mounts back or lists as
writable; :mod:`.render` writes it into the unit, :mod:`.access` checks the paths from
where the service will see them.
"""

from __future__ import annotations

import dataclasses
import os

STATE_ROOT = "/var/lib"
# ProtectHome=yes makes these empty and inaccessible.
PROTECTED_HOME_DIRS = ("/home", "/root", "/run/user")
# PrivateTmp=yes gives the service its own, empty, /tmp and /var/tmp.
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp")


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """Where the rendered unit's sandbox must differ from the package's."""

    state_directory: str | None  # StateDirectory= value, relative to /var/lib
    read_write_paths: tuple[str, ...] = ()
    protect_home: str = "yes"
    bind_read_only: tuple[str, ...] = ()
    bind_read_write: tuple[str, ...] = ()
    # Code under /tmp or /var/tmp (a checkout there, as CI makes): PrivateTmp=yes gives the
    # service empty ones, so these are mounted back into them, read-only.
    bind_private_tmp: tuple[str, ...] = ()


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
