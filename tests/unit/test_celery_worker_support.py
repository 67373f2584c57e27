"""Which Airflow may run `airflow-systemd celery-worker`: in every supported virtualenv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_systemd.contract import ConfigError
from airflow_systemd.services import celery_worker

CHECKOUT = Path(__file__).resolve().parents[2]
VENVS = Path(sys.executable).parents[2]  # .venvs/, holding one virtualenv per Airflow version


@pytest.mark.parametrize("version", ["2.10.5", "2.11.2", "3.2.1"])
def test_airflow_before_3_3_is_refused_as_a_configuration_error(version):
    with pytest.raises(
        ConfigError, match=rf"Celery workers need Airflow 3.3 or later: this is Airflow {version}"
    ):
        celery_worker.require_celery_support(version)


def test_under_airflow_2_the_worker_exits_78_with_one_line_and_starts_nothing(tmp_path):
    # 2.11.2: the Airflow 2 line that every run of scripts/test has (2.10.5 only when asked for).
    python = VENVS / "airflow-2.11.2" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Airflow 2.11 virtualenv at {python.parent.parent}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "NOTIFY_SOCKET", "WATCHDOG"))}
    env.update(PYTHONPATH=str(CHECKOUT), AIRFLOW_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [str(python), "-m", "airflow_systemd", "celery-worker", "--queues", "default"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 78, done.stderr
    errors = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert errors == [
        "airflow-systemd celery-worker: configuration error: "
        "Celery workers need Airflow 3.3 or later: this is Airflow 2.11.2"
    ], done.stderr
    assert "Traceback" not in done.stderr
