"""The housekeeping timers and the oneshot services they start, under real systemd.

The timers fire daily; the tests check that enabling them schedules them, and start the
services directly (what the timer does when it elapses) to check what they delete.
"""

from __future__ import annotations

import pytest

TIMERS = ("airflow-db-clean.timer", "airflow-log-clean.timer")
OLD_LOG = "/var/log/airflow/dag_id=afsd_old/run_id=r1/task_id=t/attempt=1.log"
NEW_LOG = "/var/log/airflow/dag_id=afsd_new/run_id=r1/task_id=t/attempt=1.log"


@pytest.fixture
def timers(unit):
    yield unit
    unit.sb.systemctl("disable", "--now", *TIMERS, check=False)


def test_enabled_timers_are_scheduled_daily(timers):
    timers.sb.systemctl("enable", "--now", *TIMERS)
    for timer in TIMERS:
        out = timers.sb.systemctl(
            "show", "-p", "ActiveState,NextElapseUSecRealtime,TimersCalendar", timer
        ).stdout
        props = dict(line.split("=", 1) for line in out.splitlines())
        assert props["ActiveState"] == "active", props
        assert "OnCalendar=*-*-* 00:00:00" in props["TimersCalendar"], props  # daily
        assert props["NextElapseUSecRealtime"] not in ("", "0", "n/a"), props


def run_oneshot(d, service: str) -> None:
    """Start SERVICE (a oneshot: systemctl returns once it ended) and expect success."""
    d.sb.systemctl("start", service, check=False)
    assert d.props(service)["Result"] == "success", d.journal_tail(service)


def test_log_clean_deletes_task_logs_past_the_retention_only(unit):
    unit.configure(AIRFLOW_SYSTEMD_LOG_RETENTION_DAYS="30")
    unit.sb.exec("install", "-d", "-o", "airflow", "-g", "airflow", "-m", "0750", "/var/log/airflow")
    for path, age in ((OLD_LOG, "40 days ago"), (NEW_LOG, "1 day ago")):
        unit.sb.exec("runuser", "-u", "airflow", "--", "sh", "-c", f"mkdir -p \"$(dirname '{path}')\"")
        unit.sb.exec(
            "runuser", "-u", "airflow", "--", "sh", "-c", f"echo log > '{path}' && touch -d '{age}' '{path}'"
        )
    cursor = unit.cursor()
    run_oneshot(unit, "airflow-log-clean.service")
    listing = unit.sb.exec("find", "/var/log/airflow", "-path", "*dag_id=afsd_*").stdout
    assert "dag_id=afsd_old" not in listing, listing  # the file and the directories it emptied
    assert NEW_LOG in listing, listing
    assert "removed 1 task log file(s) older than 30 days" in unit.journal(
        cursor, "airflow-log-clean.service"
    )


def test_db_clean_deletes_metadata_past_the_retention_only(unit):
    unit.configure(AIRFLOW_SYSTEMD_DB_RETENTION_DAYS="30")
    unit.sql(
        "INSERT INTO log (dttm, event) VALUES (now() - interval '40 days', 'afsd-old'), (now(), 'afsd-new')"
    )
    run_oneshot(unit, "airflow-db-clean.service")
    left = unit.sql("SELECT string_agg(event, ',' ORDER BY event) FROM log WHERE event LIKE 'afsd-%'")
    assert left == "afsd-new"
