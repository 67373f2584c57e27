"""Real Airflow (the one installed beside this pytest) against a real, private PostgreSQL."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.harness.airflow_env import airflow_environ
from tests.harness.notify_peer import NotifyPeer
from tests.harness.pgcluster import PgCluster

VENV_BIN = Path(sys.executable).parent
TEMPLATE_DB = "airflow_template"
_db_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory):
    cluster = PgCluster().init()
    cluster.start()
    cluster.sql(f"CREATE DATABASE {TEMPLATE_DB}")
    home = tmp_path_factory.mktemp("airflow-migrate")
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env=airflow_environ(home, cluster.url(TEMPLATE_DB)),
        check=True,
        capture_output=True,
    )
    yield cluster
    cluster.remove()


@pytest.fixture
def pg(pg_cluster):
    """The session cluster, running and thawed again after a test that stopped or froze it."""
    yield pg_cluster
    pg_cluster.thaw()
    if not pg_cluster.running():
        pg_cluster.start()
    pg_cluster.wait_ready()


@pytest.fixture
def migrated_db(pg) -> str:
    name = f"t{os.getpid()}_{next(_db_names)}"
    pg.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return pg.url(name)


@dataclass
class Scheduler:
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
        try:
            now = {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            now = set()
        self.known_descendants |= now
        return now

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


def alive(pids) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended: it only waits to be reaped)."""
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.NoSuchProcess:
            pass
    return running


@pytest.fixture
def start_component(tmp_path, migrated_db):
    """Start `airflow-systemd COMMAND ARGS` with a notify peer; all killed at teardown."""
    started: list[Scheduler] = []

    def start(
        command: str,
        *args: str,
        db_url: str | None = None,
        watchdog: float | None = 4.0,
        notify: bool = True,
        fault: str = "",
        env: dict[str, str] | None = None,
    ) -> Scheduler:
        home = tmp_path / f"home{len(started)}"
        environ = airflow_environ(home, db_url or migrated_db)
        peer = NotifyPeer(tmp_path / f"notify{len(started)}") if notify else None
        if peer:
            environ.update(peer.environ(int(watchdog * 1e6) if watchdog else None))
        fault_out = tmp_path / f"fault{len(started)}.json"
        environ.update(AFSD_TEST_FAULT=fault, AFSD_TEST_OUT=str(fault_out), **(env or {}))
        output = tmp_path / f"{command}{len(started)}.log"
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow-systemd"), command, *args],
            env=environ,
            stdout=output.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sched = Scheduler(proc, peer, output, time.monotonic(), fault_out)
        started.append(sched)
        return sched

    yield start

    for sched in started:
        leftovers = sched.known_descendants | sched.descendants()
        if sched.proc.poll() is None:
            os.killpg(sched.proc.pid, signal.SIGKILL)
            sched.proc.wait(10)
        for pid in alive(leftovers):
            os.kill(pid, signal.SIGKILL)
        if sched.peer:
            sched.peer.close()


@pytest.fixture
def start_scheduler(start_component):
    return lambda *args, **kwargs: start_component("scheduler", *args, **kwargs)
