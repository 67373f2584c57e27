"""System tests: a real systemd booted in a throw-away container (tests/harness/sandbox.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import airflow
import pytest

from tests.harness.airflow_env import create_migrated_database
from tests.harness.deployment import SCHEDULER, WATCHDOG, Deployment
from tests.harness.pgcluster import PgCluster
from tests.harness.sandbox import Sandbox
from tests.harness.sessions import remove_sandboxes_of_dead_sessions, session_sandbox

SYSTEM_TESTS_DIR = Path(__file__).resolve().parent
NAME_PREFIX = "afsd"

# Incidents of Airflow 3's four services, the stuck-work check and roles are Airflow 3's (2.x
# gets nothing new): not collected there, rather than skipped (with CI=true a skip fails).
if not airflow.__version__.startswith("3."):
    collect_ignore = ["test_incidents.py", "test_stuck_work.py", "test_roles.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # a conftest hook sees the whole session's items, not only this directory's
    for item in items:
        if SYSTEM_TESTS_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.system)


def _why_no_sandbox() -> str | None:
    if os.geteuid() != 0:
        return "system tests need root (systemd-nspawn, mounts, cgroups)"
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install systemd-container)"
    return None


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One booted container for the whole session; it is gone again when the session ends."""
    reason = _why_no_sandbox()
    if reason:
        # CI treats skips as failures, so this only lets dev machines without root pass through
        pytest.skip(reason)
    remove_sandboxes_of_dead_sessions(NAME_PREFIX)
    sb = session_sandbox(NAME_PREFIX)
    try:
        sb.up()
        yield sb
    finally:
        sb.down()


@pytest.fixture(scope="session")
def deployment(sandbox):
    """Airflow installed into the sandbox's systemd, on a private PostgreSQL of the host."""
    pg = PgCluster().init()
    pg.start()
    create_migrated_database(pg, "airflow")
    d = Deployment(sandbox, pg, "airflow")
    d.install(watchdog=f"{WATCHDOG}s")
    yield d
    d.reset()
    pg.remove()


@pytest.fixture
def unit(deployment):
    """The deployment with every Airflow service stopped, default settings, the database up."""
    d = deployment
    d.stop_all()
    d.reset()
    d.configure()
    yield d
    d.pg.thaw()
    if not d.pg.running():
        d.pg.start()
    d.stop_all()
    d.reset()


@pytest.fixture
def tasks(unit):
    """The deployment with what runs tasks up: the scheduler, the API server, the DAG processor."""
    unit.sb.systemctl("start", SCHEDULER)
    unit.start_companions()
    yield unit
