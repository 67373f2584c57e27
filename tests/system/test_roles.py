"""A host's role under a real systemd: what `systemctl start airflow-scheduler` brings up on an
all-in-one host, and `airflow-systemd role` changing what runs.

One installation for the module, set up as `apt install` leaves an all-in-one host: the four
Airflow 3 services enabled (deb-systemd-helper enables each unit as `systemctl enable` does,
the links of every WantedBy= included). Test-only settings: tests/harness/deployment.py's.
The control role's wildcard listener is checked in the unit's environment, not started: the
container shares the host's network, and the test opens no listener there beyond loopback.
"""

from __future__ import annotations

import pytest

from airflow_systemd.contract import EXECUTION_API_REACHABLE, EXECUTION_API_UNREACHABLE
from tests.harness.deployment import SCHEDULER, SERVICES_3, VENV, Deployment

PIPELINE = "afsd_pipeline"
API, DAG_PROCESSOR, TRIGGERER = (
    "airflow-api-server.service",
    "airflow-dag-processor.service",
    "airflow-triggerer.service",
)
EVERY_SERVICE = (SCHEDULER, DAG_PROCESSOR, TRIGGERER, API)
DROP_IN = f"/etc/systemd/system/{API}.d/role-control.conf"


@pytest.fixture(scope="module")
def host(deployment):
    d = deployment
    d.stop_all()
    d.configure()
    d.sb.systemctl("enable", *SERVICES_3)  # an all-in-one host, as after apt install
    try:
        yield d
    finally:
        d.retire(PIPELINE)
        d.stop_all()
        d.sb.systemctl("disable", *SERVICES_3, check=False)
        d.sb.exec("rm", "-f", DROP_IN)
        d.sb.daemon_reload()


def role(d: Deployment, *args: str) -> str:
    """`airflow-systemd role ARGS` inside, as root (the operator's sudo)."""
    return d.sb.exec(
        str(VENV / "bin" / "airflow-systemd"), "role", *args, env=Deployment._checkout_env(), timeout=300
    ).stderr


def enabled(d: Deployment, unit: str) -> str:
    return d.sb.systemctl("is-enabled", unit, check=False).stdout.strip()


def all_running(d: Deployment, units, timeout: float = 120) -> None:
    for unit in units:
        d.wait_for(lambda u=unit: d.state(u) == "active/running", timeout, f"{unit} active", unit=unit)


def test_starting_the_scheduler_alone_brings_up_what_its_tasks_need_and_a_dag_runs(host):
    assert [host.state(u) for u in EVERY_SERVICE] == ["inactive/dead"] * 4
    host.sb.systemctl("start", SCHEDULER)  # nothing else: what a new user types
    all_running(host, EVERY_SERVICE)
    host.add_dag(PIPELINE)
    run = host.trigger(PIPELINE)

    def ended():
        state = host.run_state(PIPELINE, run)
        return state if state in ("success", "failed") else None

    state = host.wait_for(ended, 180, "the DAG run to end")
    tries = host.sql(
        f"SELECT max(try_number) FROM task_instance WHERE dag_id = '{PIPELINE}' AND run_id = '{run}'"
    )
    # The first try of every task succeeded: each reached the execution API.
    assert (state, tries) == ("success", "1"), host.journal_tail(lines=80)


def test_a_role_runs_what_it_needs_and_nothing_else_and_all_in_one_brings_everything_back(host):
    host.sb.systemctl("start", "airflow.target")  # running already after the test above
    all_running(host, EVERY_SERVICE)

    cursor = host.cursor()
    said = role(host, "scheduler")
    assert "systemctl disable --now airflow-dag-processor.service airflow-api-server.service" in said
    assert {u: (enabled(host, u), host.state(u)) for u in EVERY_SERVICE} == {
        SCHEDULER: ("enabled", "active/running"),
        TRIGGERER: ("enabled", "active/running"),
        DAG_PROCESSOR: ("disabled", "inactive/dead"),
        API: ("disabled", "inactive/dead"),
    }
    # Starting the scheduler no longer brings up what the role left out.
    wants = set(host.sb.show(SCHEDULER, "Wants").split())
    assert TRIGGERER in wants and not {API, DAG_PROCESSOR} & wants, wants
    # With the LocalExecutor and no API server here, its tasks would fail: the scheduler says so
    # in its Status: line and once in the journal, rather than looking healthy.
    status = host.wait_for(
        lambda: "tasks cannot reach the execution API" in host.sb.show(SCHEDULER, "StatusText"),
        60,
        "STATUS= to name the unreachable execution API",
    )
    assert status
    (event,) = host.wait_for(
        lambda: host.journal_json(cursor, SCHEDULER, f"MESSAGE_ID={EXECUTION_API_UNREACHABLE}"),
        30,
        "the EXECUTION_API_UNREACHABLE event",
    )
    assert event["PRIORITY"] == "4" and event["EXECUTION_API_URL"].endswith("/execution/"), event
    assert host.state(SCHEDULER) == "active/running"  # reported, never killed for it

    # The control role: the API server on every address, from its drop-in.
    role(host, "control", "--no-start")
    assert all(enabled(host, u) == "enabled" for u in EVERY_SERVICE)
    hosts = [v for v in host.sb.show(API, "Environment").split() if v.startswith("AIRFLOW__API__HOST=")]
    assert hosts[-1] == "AIRFLOW__API__HOST=0.0.0.0", hosts  # the last one wins
    assert host.state(API) == "inactive/dead"  # --no-start

    cursor = host.cursor()
    role(host, "all-in-one")
    all_running(host, EVERY_SERVICE)
    host.wait_for(
        lambda: host.journal_json(cursor, SCHEDULER, f"MESSAGE_ID={EXECUTION_API_REACHABLE}"),
        60,
        "the EXECUTION_API_REACHABLE event once the API server is back",
    )
    assert {u: (enabled(host, u), host.state(u)) for u in EVERY_SERVICE} == {
        u: ("enabled", "active/running") for u in EVERY_SERVICE
    }
    assert host.sb.exec("test", "-e", DROP_IN, check=False).returncode == 1
    out = host.sb.exec("ss", "-Hltn", f"sport = :{host.api_port}").stdout
    assert [line.split()[3] for line in out.splitlines()] == [f"127.0.0.1:{host.api_port}"], out
