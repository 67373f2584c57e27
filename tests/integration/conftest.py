"""Real Airflow (the one installed beside this pytest) against a real, private PostgreSQL."""

from __future__ import annotations

import itertools
import os
from importlib import metadata

import pytest

from tests.harness import components
from tests.harness.airflow_env import create_migrated_database
from tests.harness.components import TEMPLATE_DB
from tests.harness.pgcluster import PgCluster

_db_names = itertools.count(1)


def _installed(distribution: str) -> bool:
    try:
        return bool(metadata.version(distribution))
    except metadata.PackageNotFoundError:
        return False


# Celery workers are Airflow 3.3.x's only: its lock has the Celery provider and redis-py, those
# of Airflow 2 have not. There the broker's and the workers' tests are not collected, rather
# than skipped (with CI=true a skip fails).
if not _installed("apache-airflow-providers-celery"):
    collect_ignore_glob = ["test_redis_*.py", "test_celery_*.py"]
# The stuck-work check is Airflow 3's only (2.x gets nothing new).
if metadata.version("apache-airflow").startswith("2."):
    collect_ignore_glob = [*globals().get("collect_ignore_glob", []), "test_stuck_work.py"]


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster().init()
    cluster.start()
    create_migrated_database(cluster, TEMPLATE_DB)
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


@pytest.fixture
def start_component(tmp_path, migrated_db):
    """Start `airflow-systemd COMMAND ARGS` with a notify peer; all killed at teardown."""
    started: list[components.Component] = []

    def start(command: str, *args: str, db_url: str | None = None, **options) -> components.Component:
        component = components.start(
            tmp_path, len(started), command, *args, db_url=db_url or migrated_db, **options
        )
        started.append(component)
        return component

    yield start

    for component in started:
        components.stop(component)


@pytest.fixture
def start_scheduler(start_component):
    return lambda *args, **kwargs: start_component("scheduler", *args, **kwargs)
