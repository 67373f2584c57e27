"""Stuck work under real systemd and journald (Airflow 3): the scheduler's events, read back
with journalctl by MESSAGE_ID and explained by the catalog, and its STATUS=.

A task held in ``queued`` with free slots: the fault drop-first-workload, on the services'
PYTHONPATH inside the container (tests/harness/faults/), makes the LocalExecutor lose the first
workload of task ``stuck``. A trigger no triggerer takes: a deferrable sensor while no triggerer
runs, until the test starts one.
"""

from __future__ import annotations

import pytest

from airflow_systemd import contract
from airflow_systemd.services.stuck_work import CHECK_EVERY
from tests.harness.deployment import FAULTS_INSIDE, SCHEDULER

THRESHOLD = 5  # AIRFLOW_SYSTEMD_STUCK_AFTER here, seconds
LOOP = 1.0  # the harness's [scheduler] scheduler_heartbeat_sec: about one loop
MARGIN = 5.0  # a busy 2-core CI machine; journald's own delay
STUCK = "afsd_stuck"
DEFERRED = "afsd_deferred"  # wait (deferrable) >> done
TRIGGERER = "airflow-triggerer.service"


@pytest.fixture
def scheduler(unit):
    """The scheduler (with the fault and a 5 s threshold), the API server and the DAG processor;
    no triggerer."""
    unit.configure(
        PYTHONPATH=FAULTS_INSIDE,
        AFSD_TEST_FAULT="drop-first-workload",
        AFSD_TEST_OUT="/var/lib/airflow/fault.json",
        AIRFLOW_SYSTEMD_STUCK_AFTER=f"{THRESHOLD}s",
    )
    unit.sb.systemctl("start", SCHEDULER)
    unit.start_companions()
    yield unit
    unit.sb.systemctl("stop", TRIGGERER, check=False)


def events(d, cursor: str, message_id: str, *matches: str) -> list[dict]:
    return d.journal_json(cursor, SCHEDULER, f"MESSAGE_ID={message_id}", *matches)


def cleared(d, cursor: str, kind: str) -> list[dict]:
    return events(d, cursor, contract.STUCK_WORK_CLEARED, f"STUCK_KIND={kind}")


def reported(
    d, cursor: str, message_id: str, since: tuple[str, str], run: str, dag_task: tuple[str, str]
) -> dict:
    """The first ``message_id`` event, once there is one: within threshold + one check + one
    loop of when the work got stuck (``since``: the column, and the rows it is read from),
    about ``dag_task`` of ``run``."""
    event = d.wait_for(lambda: events(d, cursor, message_id), 60, contract.EVENTS[message_id])[0]
    # Both in seconds since the epoch, on the same clock (the container's is the host's).
    column, rows = since
    stuck_at = float(d.sql(f"SELECT extract(epoch FROM {column}) FROM {rows}"))
    took = int(event["__REALTIME_TIMESTAMP"]) / 1e6 - stuck_at
    print(f"\n{contract.EVENTS[message_id]}: threshold {THRESHOLD}s, event {took:.1f}s after it got stuck")
    assert THRESHOLD <= took <= THRESHOLD + CHECK_EVERY + LOOP + MARGIN, took
    assert (event["DAG_ID"], event["TASK_ID"], event["RUN_ID"]) == (*dag_task, run)
    assert event["PRIORITY"] == "4"
    return event


def test_a_task_queued_with_free_slots_is_a_journal_event_and_clears_when_it_runs(scheduler):
    d = scheduler
    cursor = d.cursor()
    d.add_dag(STUCK)
    run = d.trigger(STUCK)
    d.wait_for(lambda: d.task_state(STUCK, run, "stuck") == "queued", 120, "the task to be queued")
    since = ("queued_dttm", f"task_instance WHERE run_id = '{run}'")
    event = reported(d, cursor, contract.TASK_QUEUED_TOO_LONG, since, run, (STUCK, "stuck"))
    assert int(event["FREE_SLOTS"]) > 0
    assert (
        "queued for"
        in d.sb.exec(
            "journalctl",
            "-x",
            "--no-pager",
            f"--cursor={cursor}",
            f"MESSAGE_ID={contract.TASK_QUEUED_TOO_LONG}",
        ).stdout
    )
    d.wait_for(lambda: "oldest queued task waiting" in d.props()["StatusText"], 30, "STATUS= with the age")
    assert not cleared(d, cursor, "queued")

    # The fault drops only the first workload: scheduled again, the task runs.
    d.sql(f"UPDATE task_instance SET state = 'scheduled' WHERE run_id = '{run}'")
    d.wait_for(lambda: cleared(d, cursor, "queued"), 60, "the cleared event")
    d.wait_for(lambda: d.run_state(STUCK, run) == "success", 120, "the run to succeed")
    # STATUS= follows within a check and a status interval.
    d.wait_for(lambda: "oldest queued task" not in d.props()["StatusText"], 15, "STATUS= without the age")
    assert d.state() == "active/running"  # a report, never a kill


def test_a_trigger_no_triggerer_takes_is_a_journal_event_and_clears_once_one_runs(scheduler):
    d = scheduler
    cursor = d.cursor()
    d.add_dag(DEFERRED)
    run = d.trigger(DEFERRED)
    d.wait_for(lambda: d.task_state(DEFERRED, run, "wait") == "deferred", 120, "the sensor to defer")
    since = ("created_date", "trigger ORDER BY id DESC LIMIT 1")
    reported(d, cursor, contract.TRIGGER_UNASSIGNED, since, run, (DEFERRED, "wait"))

    d.sb.systemctl("start", TRIGGERER)
    d.wait_for(lambda: cleared(d, cursor, "trigger"), 120, "the cleared event")
    d.wait_for(lambda: d.run_state(DEFERRED, run) == "success", 180, "the run to succeed")
