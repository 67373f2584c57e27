"""Stuck work: what the scheduler reports, given ages, free slots and what it reported before."""

from __future__ import annotations

import logging

import pytest

from airflow_systemd import contract
from airflow_systemd.services import stuck_work
from airflow_systemd.services.stuck_work import Oldest, StuckWork
from tests.harness.clock import Clock

AFTER = 300.0


def queued(age: float, count: int = 1) -> Oldest:
    return Oldest(age, count, "etl", "load", "manual__1")


@pytest.mark.parametrize(
    ("text", "seconds"), [("", 300), ("300", 300), ("300s", 300), ("5min", 300), ("1h", 3600), ("2.5s", 2.5)]
)
def test_threshold_reads_a_duration_and_defaults_to_5_minutes(text, seconds):
    assert stuck_work.threshold({contract.STUCK_AFTER_VARIABLE: text}) == seconds
    assert stuck_work.threshold({}) == 300


@pytest.mark.parametrize("text", ["soon", "0", "0s", "-5s", "5 days", "5d"])
def test_a_bad_threshold_is_a_configuration_error_naming_the_variable(text):
    with pytest.raises(contract.ConfigError) as error:
        stuck_work.threshold({contract.STUCK_AFTER_VARIABLE: text})
    assert contract.STUCK_AFTER_VARIABLE in str(error.value) and "\n" not in str(error.value)


def test_a_queued_task_is_stuck_only_past_the_threshold_and_with_a_free_slot():
    assert stuck_work.queued_stuck(queued(AFTER), 1, AFTER)
    assert not stuck_work.queued_stuck(queued(AFTER - 1), 1, AFTER)
    assert not stuck_work.queued_stuck(queued(10 * AFTER), 0, AFTER), "a full executor queues by design"
    assert not stuck_work.queued_stuck(None, 4, AFTER)


def test_an_unassigned_trigger_is_stuck_past_the_threshold():
    assert stuck_work.trigger_stuck(queued(AFTER), AFTER)
    assert not stuck_work.trigger_stuck(queued(AFTER - 1), AFTER)
    assert not stuck_work.trigger_stuck(None, AFTER)


def test_a_report_is_repeated_every_threshold_then_cleared_once():
    assert stuck_work.next_report(None, False, 0, AFTER) == ("", None)
    assert stuck_work.next_report(None, True, 10, AFTER) == ("report", 10)
    assert stuck_work.next_report(10, True, 10 + AFTER - 1, AFTER) == ("", 10)
    assert stuck_work.next_report(10, True, 10 + AFTER, AFTER) == ("report", 10 + AFTER)
    assert stuck_work.next_report(10 + AFTER, False, 20 + AFTER, AFTER) == ("cleared", None)


def test_status_shows_the_age_of_the_oldest_queued_task():
    assert stuck_work.status_text(queued(12.4)) == "oldest queued task waiting 12s"
    assert stuck_work.status_text(None) == ""


def test_the_check_reports_a_stuck_queued_task_with_its_ids_then_clears(events):
    clock = Clock()
    check = StuckWork(AFTER, clock)
    assert check.due()
    check.observe(queued(AFTER - 1), 3, None)
    assert not events.records and check.status() == "oldest queued task waiting 299s"
    assert not check.due()

    clock.now += stuck_work.CHECK_EVERY
    assert check.due()
    check.observe(queued(AFTER + 1, count=2), 3, None)
    (record,) = events.records
    assert record.MESSAGE_ID == contract.TASK_QUEUED_TOO_LONG and record.levelno == logging.WARNING
    assert (record.DAG_ID, record.TASK_ID, record.RUN_ID) == ("etl", "load", "manual__1")
    assert (record.STUCK_SECONDS, record.FREE_SLOTS, record.STUCK_COUNT) == ("301", 3, 2)
    assert "etl.load (run manual__1) queued for 301s" in record.getMessage()
    assert not hasattr(record, "MAP_INDEX")

    clock.now += AFTER / 2
    check.observe(queued(AFTER * 1.5 + 1), 3, None)
    assert len(events.records) == 1, "repeated before a threshold has passed"
    clock.now += AFTER / 2
    check.observe(queued(AFTER * 2 + 1), 3, None)
    assert events.ids() == [contract.TASK_QUEUED_TOO_LONG] * 2

    clock.now += 5
    check.observe(None, 4, None)
    cleared = events.records[-1]
    assert cleared.MESSAGE_ID == contract.STUCK_WORK_CLEARED and cleared.STUCK_KIND == "queued"
    assert cleared.STUCK_SECONDS == "606"  # since the oldest began to wait
    check.observe(None, 4, None)
    assert len(events.records) == 3, "cleared once"
    assert check.status() == ""


def test_a_full_executor_clears_nothing_it_did_not_report(events):
    check = StuckWork(AFTER, Clock())
    check.observe(queued(10 * AFTER), 0, None)
    check.observe(None, 0, None)
    assert not events.records


def test_an_unassigned_trigger_is_reported_and_cleared_on_its_own(events):
    clock = Clock()
    check = StuckWork(AFTER, clock)
    trigger = Oldest(AFTER + 2, 1, "etl", "wait", "manual__1", map_index=3)
    check.observe(queued(1), 4, trigger)
    (record,) = events.records
    assert record.MESSAGE_ID == contract.TRIGGER_UNASSIGNED
    assert (record.DAG_ID, record.TASK_ID, record.MAP_INDEX) == ("etl", "wait", 3)
    assert "etl.wait[3] (run manual__1)" in record.getMessage()
    clock.now += stuck_work.CHECK_EVERY
    check.observe(queued(AFTER + 5), 4, None)
    kinds = [contract.TRIGGER_UNASSIGNED, contract.TASK_QUEUED_TOO_LONG, contract.STUCK_WORK_CLEARED]
    assert events.ids() == kinds
    assert events.records[-1].STUCK_KIND == "trigger"


def test_install_hooks_the_scheduling_on_airflow_3_and_nothing_on_airflow_2():
    import airflow

    class Runner:
        def _do_scheduling(self, session):
            return 7

    original = Runner._do_scheduling
    check = stuck_work.install(Runner, {contract.STUCK_AFTER_VARIABLE: "30s"})
    if airflow.__version__.startswith("2."):
        assert check is None and Runner._do_scheduling is original
    else:
        assert check.after == 30 and Runner._do_scheduling is not original
        assert Runner._do_scheduling.__wrapped__ is original
