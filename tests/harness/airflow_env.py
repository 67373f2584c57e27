"""An isolated Airflow configuration for tests: its own home and database, no fixed port."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness.pgcluster import PgCluster, free_port

# Test-only fault injection (see its docstring); on PYTHONPATH, Airflow imports it itself.
FAULTS = Path(__file__).resolve().parent / "faults"
# The checkout under test, ahead of whatever the venv has installed, so that the components a
# test starts run this tree's code (a second checkout or worktree tests itself).
CHECKOUT = Path(__file__).resolve().parents[2]


def airflow_environ(home: Path, db_url: str) -> dict[str, str]:
    """A complete, isolated Airflow configuration: no fixed port, no example DAGs."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db_url,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC="1",  # dag-processor
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="True",
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),  # the triggerer's, 8794
        PYTHONPATH=os.pathsep.join((str(FAULTS), str(CHECKOUT))),
    )
    return env


def create_migrated_database(pg: PgCluster, db: str) -> None:
    """``db`` on ``pg``, migrated by this virtualenv's `airflow db migrate`."""
    pg.sql(f"CREATE DATABASE {db}")
    with tempfile.TemporaryDirectory() as home:
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            env=airflow_environ(Path(home), pg.url(db)),
            check=True,
            capture_output=True,
        )
