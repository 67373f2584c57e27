"""Every Airflow service under airflow.target, and a real DAG run through all of them.

Test-only settings: heartbeats of 1 s, WatchdogSec=10s for the job loops, task retry delay
5 s (tests/harness/deployment.py, dags/afsd_pipeline.py).
"""

from __future__ import annotations

import airflow
import pytest

from tests.harness.deployment import SERVICES_2, SERVICES_3

AIRFLOW_3 = airflow.__version__.startswith("3.")
SERVICES = SERVICES_3 if AIRFLOW_3 else SERVICES_2
PIPELINE = "afsd_pipeline"


@pytest.fixture
def target(unit):
    unit.configure(AFSD_PIPELINE_SECONDS="5")
    unit.sb.systemctl("enable", *SERVICES)
    unit.sb.systemctl("start", "airflow.target")
    for service in SERVICES:
        unit.wait_for(
            lambda s=service: unit.state(f"{s}.service") == "active/running",
            120,
            f"{service}",
            unit=f"{service}.service",
        )
    unit.add_dag(PIPELINE)
    yield unit
    unit.retire(PIPELINE)
    unit.sb.systemctl("disable", *SERVICES, check=False)


def finished(d, run, timeout):
    def end_state():
        state = d.run_state(PIPELINE, run)
        return state if state in ("success", "failed") else None

    state = d.wait_for(end_state, timeout, "the DAG run to finish")
    tries = d.sql(f"SELECT max(try_number) FROM task_instance WHERE dag_id='{PIPELINE}' AND run_id='{run}'")
    return state, int(tries or 0)


def test_target_starts_every_service_and_a_dag_runs(target):
    run = target.trigger(PIPELINE)
    state, tries = finished(target, run, 180)
    assert (state, tries) == ("success", 1), target.journal_tail(lines=80)
    assert all(target.state(f"{s}.service") == "active/running" for s in SERVICES)
    out = target.sb.exec("ss", "-Hltn", f"sport = :{target.api_port}").stdout
    local = [line.split()[3] for line in out.splitlines()]
    assert local == [f"127.0.0.1:{target.api_port}"], out  # loopback only by default
    target.sb.systemctl("stop", "airflow.target")  # returns at once; PartOf= stops follow

    def ended():
        states = {s: target.props(f"{s}.service") for s in SERVICES}
        return {s: (p["ActiveState"], p["Result"]) for s, p in states.items()}

    target.wait_for(lambda: all(e[0] != "deactivating" for e in ended().values()), 45, "every stop")
    assert all(e == ("inactive", "success") for e in ended().values()), ended()
