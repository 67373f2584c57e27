"""A DAG run triggered before a fault completes after recovery: airflow.target on Airflow 3.

Each test triggers a run, waits until the fault can hit it (a task running, or deferred in
the triggerer), injects the fault, and then asks for what the issue promises: the run ends
`success` with at most one retry per task, every service is back to active/running by
itself, no run or task is left queued/running, and no process outlived its main process.

Test-only settings, on top of tests/harness/deployment.py's (1 s heartbeats, WatchdogSec=10s for
the job loops, task heartbeat timeout 30 s, retry delay 5 s): a restarted scheduler adopts the
tasks of its dead predecessor once that one's heartbeat is older than
``scheduler_health_check_threshold`` and only at ``orphaned_tasks_check_interval``
(defaults 30 s and 300 s); the triggerer takes over triggers of a dead triggerer after
``triggerer_health_check_threshold`` (30 s). All three are 10 s here. The units keep their
shipped RestartSec=10s, so the printed recovery times include it.
"""

from __future__ import annotations

import time

import airflow
import pytest

from tests.harness.deployment import ADOPT_ORPHANS_FAST, SCHEDULER, SERVICES_3, WATCHDOG

FAST_RECOVERY = {
    **ADOPT_ORPHANS_FAST,
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    "AFSD_PIPELINE_SECONDS": "20",  # the Python task runs long enough to be hit
}
PIPELINE = "afsd_pipeline"  # compute (Python) >> report (Bash)
DEFERRED = "afsd_deferred"  # wait (deferred to the triggerer) >> done (Bash)
START_LIMIT_DROP_IN = "60-test-start-limit.conf"
# Seconds the API server stays stopped once a task is queued, before its start (which takes
# 10 s or more): past the 15 s Airflow's own retries give a task's first call at the most.
API_AWAY = 20
UNFINISHED = "('queued', 'running', 'scheduled', 'up_for_retry', 'deferred', 'restarting')"


@pytest.fixture(scope="module")
def target(deployment):
    d = deployment
    d.stop_all()
    d.configure(**FAST_RECOVERY)
    # Each test here restarts its unit once on purpose, and the database freeze restarts every
    # job loop; with the earlier modules' starts still inside the shipped StartLimitIntervalSec=10min,
    # the shipped StartLimitBurst=5 refused a restart this module asserts (seen in CI: the DAG
    # processor's 6th start in 10 minutes). The limit itself is test_journal_and_alerts.py's subject.
    for service in SERVICES_3:
        d.drop_in(START_LIMIT_DROP_IN, "[Unit]\nStartLimitBurst=20\n", service)
    d.sb.systemctl("enable", *SERVICES_3)
    d.sb.systemctl("start", "airflow.target")
    all_running(d, 120)
    d.add_dag(PIPELINE)
    d.add_dag(DEFERRED)
    yield d
    d.pg.thaw()
    if not d.pg.running():
        d.pg.start()
    d.retire(PIPELINE)
    d.retire(DEFERRED)
    d.stop_all()
    d.sb.systemctl("disable", *SERVICES_3, check=False)
    d.sb.exec("rm", "-f", *(f"/etc/systemd/system/{s}.service.d/{START_LIMIT_DROP_IN}" for s in SERVICES_3))
    d.sb.daemon_reload()


def all_running(d, timeout: float) -> None:
    for service in SERVICES_3:
        unit = f"{service}.service"
        d.wait_for(lambda u=unit: d.state(u) == "active/running", timeout, f"{unit} active", unit=unit)


def recovers(d, dag: str, task: str, states: tuple[str, ...], fault, timeout: float = 300) -> float:
    """Trigger DAG, inject FAULT once TASK is in one of STATES; assert the promised recovery.

    Returns the seconds from the fault to the run's success (printed for the closing note).
    """
    run = d.trigger(dag)
    d.wait_for(lambda: d.task_state(dag, run, task) in states, 120, f"{dag}.{task} {states}")
    t0 = time.monotonic()
    fault()

    state = run_end(d, dag, run, timeout)
    took = time.monotonic() - t0
    tries = tries_of(d, dag, run)
    assert state == "success", f"{tries}\n{d.task_logs(dag, run)}\n{d.journal_tail(lines=80)}"
    assert all(int(t.split("=")[1]) <= 2 for t in tries), f"more than one retry: {tries}"
    all_running(d, 120)
    left = d.sql(
        f"SELECT count(*) FROM dag_run WHERE dag_id IN ('{PIPELINE}', '{DEFERRED}') "
        "AND state IN ('queued', 'running')"
    )
    assert left == "0", "a run is stuck in queued/running"
    stuck = d.sql(f"SELECT count(*) FROM task_instance WHERE run_id = '{run}' AND state IN {UNFINISHED}")
    assert stuck == "0", "a task is stuck"
    for service in SERVICES_3:
        d.assert_no_strays(f"{service}.service")
    print(f"\nRECOVERY {dag}: fault -> run success in {took:.1f}s; tries {tries}")
    return took


def run_end(d, dag: str, run: str, timeout: float) -> str:
    """The run's final state, success or failed, once it has one."""

    def ended():
        state = d.run_state(dag, run)
        return state if state in ("success", "failed") else None

    return d.wait_for(ended, timeout, f"the {dag} run to end")


def tries_of(d, dag: str, run: str) -> list[str]:
    """TASK=TRY_NUMBER for each task of the run, by task id."""
    return d.sql(
        f"SELECT task_id || '=' || try_number FROM task_instance WHERE dag_id='{dag}' AND run_id='{run}' "
        "ORDER BY task_id"
    ).split()


def kill_main(d, service: str, signal: str):
    return lambda: d.sb.systemctl("kill", f"--signal={signal}", "--kill-whom=main", service)


def restarts(d, service: str) -> int:
    return int(d.props(service)["NRestarts"])


def test_scheduler_sigkilled_while_a_task_runs(target):
    before = restarts(target, SCHEDULER)
    recovers(target, PIPELINE, "compute", ("running",), kill_main(target, SCHEDULER, "SIGKILL"))
    assert restarts(target, SCHEDULER) == before + 1


def test_database_frozen_for_twice_the_watchdog_while_a_task_runs(target):
    before = restarts(target, SCHEDULER)

    def freeze():
        target.pg.freeze()
        time.sleep(2 * WATCHDOG)  # the outage itself: how long the database stays frozen
        target.pg.thaw()

    recovers(target, PIPELINE, "compute", ("running",), freeze)
    assert restarts(target, SCHEDULER) >= before + 1, "the watchdog should have restarted the scheduler"


def test_dag_processor_hung_is_restarted_by_the_watchdog(target):
    service = "airflow-dag-processor.service"
    before = restarts(target, service)
    recovers(target, PIPELINE, "compute", ("running",), kill_main(target, service, "SIGSTOP"))
    assert restarts(target, service) == before + 1


def test_api_server_killed_while_a_task_runs(target):
    service = "airflow-api-server.service"
    before = restarts(target, service)
    recovers(target, PIPELINE, "compute", ("running",), kill_main(target, service, "SIGKILL"))
    assert restarts(target, service) == before + 1


def test_a_task_started_while_the_api_server_is_away_waits_for_it(target):
    """The API server is away (as in its watchdog's restart: RestartSec=10s, then its start)
    when a task starts: the task's first call to it is retried until it is back, and the
    first try succeeds. With Airflow's own retries (5, from 1 s: given up after 15 s at
    the most) that try fails, and the run needs its retry or fails."""
    service = "airflow-api-server.service"
    target.sb.systemctl("stop", service)
    try:
        run = target.trigger(PIPELINE)
        target.wait_for(
            lambda: target.task_state(PIPELINE, run, "compute") == "queued", 120, "compute queued"
        )
        time.sleep(API_AWAY)
    finally:
        target.sb.systemctl("start", service)

    state = run_end(target, PIPELINE, run, 300)
    tries = tries_of(target, PIPELINE, run)
    assert (state, tries) == ("success", ["compute=1", "report=1"]), target.task_logs(PIPELINE, run)


def test_triggerer_crashed_while_it_holds_a_deferred_task(target):
    service = "airflow-triggerer.service"
    before = restarts(target, service)
    recovers(target, DEFERRED, "wait", ("deferred",), kill_main(target, service, "SIGSEGV"))
    assert restarts(target, service) == before + 1


if not airflow.__version__.startswith("3."):
    # Airflow 2.10 has no api-server or standalone dag-processor in its unit set; its
    # target is proven in test_airflow_target.py. A skip would fail under CI=true.
    for _name in [n for n in dir() if n.startswith("test_")]:
        del globals()[_name]
