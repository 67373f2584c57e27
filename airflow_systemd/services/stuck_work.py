"""Stuck work: task instances queued while the executor has free slots, and deferred tasks
whose trigger no triggerer has taken. Airflow 3 only; a report, never a kill.

Every process can be up and heartbeating while work does not move (apache/airflow#56045: a
task stays ``queued`` for ever, `airflow jobs check` says healthy). From inside the
scheduler's loop, at most every :data:`CHECK_EVERY` seconds, one query per kind on the
scheduler's own session finds the oldest queued task instance and the oldest trigger with no
triggerer (``triggerer_id`` NULL) of a deferred task. Then, per kind:

* stuck for at least the threshold (``AIRFLOW_SYSTEMD_STUCK_AFTER``, default 5 min): a
  warning event (:data:`~airflow_systemd.contract.TASK_QUEUED_TOO_LONG`,
  :data:`~airflow_systemd.contract.TRIGGER_UNASSIGNED`) naming the oldest one, repeated every
  threshold while it lasts, so a pipeline that missed the first sees the next, and a long
  incident does not flood the journal;
* no longer stuck after a report: one :data:`~airflow_systemd.contract.STUCK_WORK_CLEARED`.

A queued task counts as stuck only while the scheduler's executors have a free slot: a full
executor keeps tasks queued by design. The ages come from the database's timestamps
(``queued_dttm``, the trigger's ``created_date``) against the scheduler's clock.

The decisions are the pure functions at the top, tested directly; :func:`install` is the thin
part that knows Airflow.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from airflow_systemd import journal
from airflow_systemd.contract import (
    DEFAULT_STUCK_AFTER,
    STUCK_AFTER_VARIABLE,
    STUCK_WORK_CLEARED,
    TASK_QUEUED_TOO_LONG,
    TRIGGER_UNASSIGNED,
    ConfigError,
)

CHECK_EVERY = 2.0  # seconds between checks; each is two small indexed queries

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def threshold(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds from AIRFLOW_SYSTEMD_STUCK_AFTER ("300", "300s", "5min", "1h"); a bad value is a
    configuration error."""
    text = environ.get(STUCK_AFTER_VARIABLE, "").strip() or DEFAULT_STUCK_AFTER
    match = _DURATION.match(text)
    seconds = float(match[1]) * _UNITS[match[2]] if match else 0.0
    if seconds <= 0:
        raise ConfigError(
            f"{STUCK_AFTER_VARIABLE}={text!r}: expected a duration above 0 such as 300s, 5min or 1h"
        )
    return seconds


@dataclass(frozen=True)
class Oldest:
    """The oldest item of one kind: its age in seconds, how many there are, whose it is."""

    age: float
    count: int
    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1


def queued_stuck(oldest: Oldest | None, free_slots: int, after: float) -> bool:
    """A queued task is stuck when it waited ``after`` seconds while a slot was free."""
    return oldest is not None and oldest.age >= after and free_slots > 0


def trigger_stuck(oldest: Oldest | None, after: float) -> bool:
    """A trigger is stuck when no triggerer has taken it for ``after`` seconds."""
    return oldest is not None and oldest.age >= after


def next_report(reported_at: float | None, stuck: bool, now: float, every: float) -> tuple[str, float | None]:
    """What to say now, given when the current incident was last reported (None: no incident).

    Returns ("report" | "cleared" | "", the new reported_at).
    """
    if not stuck:
        return ("cleared" if reported_at is not None else ""), None
    if reported_at is None or now - reported_at >= every:
        return "report", now
    return "", reported_at


def status_text(oldest: Oldest | None) -> str:
    """The STATUS= part: the age of the oldest queued task, if there is one."""
    return "" if oldest is None else f"oldest queued task waiting {oldest.age:.0f}s"


def _name(oldest: Oldest) -> str:
    index = f"[{oldest.map_index}]" if oldest.map_index >= 0 else ""
    return f"{oldest.dag_id}.{oldest.task_id}{index} (run {oldest.run_id})"


def _report_stuck(message_id: str, text: str, oldest: Oldest, after: float, **extra: object) -> None:
    """One stuck-work warning: ``text``, with the oldest item's ids and ages as fields."""
    ids = {"DAG_ID": oldest.dag_id, "TASK_ID": oldest.task_id, "RUN_ID": oldest.run_id}
    if oldest.map_index >= 0:
        ids["MAP_INDEX"] = oldest.map_index
    journal.event(
        message_id,
        text,
        level=logging.WARNING,
        STUCK_SECONDS=f"{oldest.age:.0f}",
        STUCK_AFTER_SECONDS=f"{after:g}",
        STUCK_COUNT=oldest.count,
        **extra,
        **ids,
    )


def report_queued(oldest: Oldest, free_slots: int, after: float) -> None:
    text = (
        f"task {_name(oldest)} queued for {oldest.age:.0f}s while the executor has {free_slots} free "
        f"slot(s) ({oldest.count} task(s) queued; threshold {after:g}s)"
    )
    _report_stuck(TASK_QUEUED_TOO_LONG, text, oldest, after, FREE_SLOTS=free_slots)


def report_trigger(oldest: Oldest, after: float) -> None:
    text = (
        f"the trigger of deferred task {_name(oldest)} has had no triggerer for {oldest.age:.0f}s "
        f"({oldest.count} trigger(s) unassigned; threshold {after:g}s): is a triggerer running?"
    )
    _report_stuck(TRIGGER_UNASSIGNED, text, oldest, after)


def report_cleared(kind: str, stuck_for: float) -> None:
    what = {"queued": "queued tasks", "trigger": "deferred tasks' triggers"}[kind]
    journal.event(
        STUCK_WORK_CLEARED,
        f"stuck work cleared: {what} move again (stuck for {stuck_for:.0f}s)",
        STUCK_KIND=kind,
        STUCK_SECONDS=f"{stuck_for:.0f}",
    )


class StuckWork:
    """The check, fed by the scheduler's loop: what to report, when, and the STATUS= text."""

    def __init__(self, after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after = after
        self._clock = clock
        self._checked = float("-inf")
        self._reported: dict[str, float | None] = {"queued": None, "trigger": None}
        self._since: dict[str, float] = {}
        self.oldest_queued: Oldest | None = None

    def due(self) -> bool:
        return self._clock() - self._checked >= CHECK_EVERY

    def observe(self, queued: Oldest | None, free_slots: int, trigger: Oldest | None) -> None:
        now = self._checked = self._clock()
        self.oldest_queued = queued
        for kind, stuck, oldest in (
            ("queued", queued_stuck(queued, free_slots, self.after), queued),
            ("trigger", trigger_stuck(trigger, self.after), trigger),
        ):
            action, self._reported[kind] = next_report(self._reported[kind], stuck, now, self.after)
            if action == "report":
                self._since.setdefault(kind, now - oldest.age)
                if kind == "queued":
                    report_queued(oldest, free_slots, self.after)
                else:
                    report_trigger(oldest, self.after)
            elif action == "cleared":
                report_cleared(kind, now - self._since.pop(kind, now))

    def status(self) -> str:
        return status_text(self.oldest_queued)


# --- The Airflow part: the two queries and the hook, for Airflow 3.


def install(runner_class, environ: Mapping[str, str] = os.environ) -> StuckWork | None:
    """Make ``SchedulerJobRunner._do_scheduling`` run the check after its own work, on its
    session. None (nothing installed) on Airflow 2."""
    import airflow

    if int(airflow.__version__.split(".")[0]) < 3:
        return None
    check = StuckWork(threshold(environ))
    do_scheduling = runner_class._do_scheduling

    def do_scheduling_then_check(self, session, *args, **kwargs):
        result = do_scheduling(self, session, *args, **kwargs)
        if check.due():
            check.observe(oldest_queued(session), free_slots(self), oldest_unassigned_trigger(session))
        return result

    do_scheduling_then_check.__wrapped__ = do_scheduling
    runner_class._do_scheduling = do_scheduling_then_check
    return check


def free_slots(runner) -> int:
    return sum(max(0, executor.slots_available) for executor in runner.executors)


def _oldest(row) -> Oldest | None:
    if row is None:
        return None
    dag_id, task_id, run_id, map_index, since, count = row
    age = max(0.0, (datetime.now(timezone.utc) - since).total_seconds())
    return Oldest(age, count, dag_id, task_id, run_id, map_index)


def oldest_queued(session) -> Oldest | None:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import func, select

    query = (
        select(TI.dag_id, TI.task_id, TI.run_id, TI.map_index, TI.queued_dttm, func.count().over())
        .where(TI.state == TaskInstanceState.QUEUED, TI.queued_dttm.is_not(None))
        .order_by(TI.queued_dttm)
        .limit(1)
    )
    return _oldest(session.execute(query).first())


def oldest_unassigned_trigger(session) -> Oldest | None:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.trigger import Trigger
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import func, select

    query = (
        select(TI.dag_id, TI.task_id, TI.run_id, TI.map_index, Trigger.created_date, func.count().over())
        .join(Trigger, TI.trigger_id == Trigger.id)
        .where(TI.state == TaskInstanceState.DEFERRED, Trigger.triggerer_id.is_(None))
        .order_by(Trigger.created_date)
        .limit(1)
    )
    return _oldest(session.execute(query).first())
