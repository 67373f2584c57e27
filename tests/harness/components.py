"""`airflow-systemd COMMAND` started as a real process, the way the integration tier runs it.

Each component gets its own Airflow home (tests/harness/airflow_env.py), optionally a notify
peer in place of systemd, and the test-only fault hook (tests/harness/faults/) switched by
``fault``. It runs in a session of its own, so that :func:`stop` can kill it whole, and then
also kills any descendant seen earlier that left the session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.airflow_env import airflow_environ
from tests.harness.notify_peer import NotifyPeer
from tests.harness.processes import alive, descendants

VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's bin, not the base python's
# The migrated database each test's database is cloned from (CREATE DATABASE ... TEMPLATE).
TEMPLATE_DB = "airflow_template"


@dataclass
class Component:
    proc: subprocess.Popen
    peer: NotifyPeer | None
    output: Path
    started: float
    fault_out: Path
    known_descendants: set[int] = field(default_factory=set)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def descendants(self) -> set[int]:
        """Every descendant seen so far (remembered, so a later check covers them all)."""
        now = descendants(self.proc.pid)
        self.known_descendants |= now
        return now

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


def start(
    workdir: Path,
    index: int,
    command: str,
    *args: str,
    db_url: str,
    watchdog: float | None = 4.0,
    notify: bool = True,
    fault: str = "",
    env: dict[str, str] | None = None,
) -> Component:
    """Start `airflow-systemd COMMAND ARGS`; its files are named with ``index`` in ``workdir``."""
    environ = airflow_environ(workdir / f"home{index}", db_url)
    peer = NotifyPeer(workdir / f"notify{index}") if notify else None
    if peer:
        environ.update(peer.environ(int(watchdog * 1e6) if watchdog else None))
    fault_out = workdir / f"fault{index}.json"
    environ.update(AFSD_TEST_FAULT=fault, AFSD_TEST_OUT=str(fault_out), **(env or {}))
    output = workdir / f"{command}{index}.log"
    proc = subprocess.Popen(
        [str(VENV_BIN / "airflow-systemd"), command, *args],
        env=environ,
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Component(proc, peer, output, time.monotonic(), fault_out)


def stop(component: Component) -> None:
    """Kill the component, its session and every descendant ever seen; close its peer."""
    leftovers = component.known_descendants | component.descendants()
    if component.proc.poll() is None:
        os.killpg(component.proc.pid, signal.SIGKILL)
        component.proc.wait(10)
    for pid in alive(leftovers):
        os.kill(pid, signal.SIGKILL)
    if component.peer:
        component.peer.close()
