"""One sandbox per pytest session, named by the session's PID, so that a later session can clean up.

A SIGKILLed pytest never tears down, and its container keeps running (nspawn is in a session
of its own); the PID in the name tells whether that pytest is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness.sandbox import DEFAULT_STATE_DIR, Sandbox


def session_sandbox(prefix: str, **options) -> Sandbox:
    """This session's sandbox (not booted): unique per pytest process, so that parallel sessions
    share no mounts or cgroups."""
    return Sandbox(name=f"{prefix}{os.getpid()}", **options)


def remove_sandboxes_of_dead_sessions(prefix: str) -> None:
    """Power off and remove the sandboxes named ``prefix`` + PID whose pytest has ended."""
    for state in DEFAULT_STATE_DIR.glob(f"{prefix}*"):
        pid = state.name[len(prefix) :]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            Sandbox(name=state.name).down()
