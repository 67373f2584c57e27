"""`airflow-systemd scheduler` against real Airflow and a real PostgreSQL.

The notify peer is a plain AF_UNIX datagram socket bound by the test, standing in for
systemd. Bounds are generous: these tests assert behaviour; bench/ measures speed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import psutil
import psycopg2
import pytest

from tests.harness.processes import alive

WATCHDOG = 4.0  # seconds; the scheduler heartbeat is 1 s in these tests


def ready(sched, timeout=90.0):
    try:
        return sched.peer.wait_for("READY", "1", timeout=timeout)
    except TimeoutError:
        pytest.fail(f"no READY=1; rc={sched.proc.poll()}; output:\n{sched.text()[-3000:]}")


def pings_between(sched, start, end):
    return [m.at for m in sched.peer.with_field("WATCHDOG", "1") if start <= m.at <= end]


def config_error_lines(sched):
    return [line for line in sched.text().splitlines() if "configuration error" in line]


def test_ready_after_first_loop_then_watchdog_at_half_interval(start_scheduler):
    sched = start_scheduler()
    msg = ready(sched)
    assert "loop 1" in msg.fields["STATUS"]
    steps = [m.fields.get("STATUS", "") for m in sched.peer.messages if m.at < msg.at]
    assert any("metadata database" in s for s in steps)
    assert not pings_between(sched, 0, msg.at - 0.001), "WATCHDOG=1 before READY=1"

    time.sleep(4 * WATCHDOG)
    pings = pings_between(sched, msg.at, time.monotonic())
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 6, pings
    # Never more often than every half interval; within the interval, but for one loop iteration
    # a loaded machine may stall (4.4 s against 4 s, once, in a full CI run at load 7; the
    # shipped WatchdogSec=30s leaves that margin).
    assert all(gap >= WATCHDOG / 2 - 0.05 for gap in gaps), gaps
    assert sum(gap >= WATCHDOG for gap in gaps) <= 1 and max(gaps) < 2 * WATCHDOG, gaps
    assert "running: loop" in sched.peer.with_field("STATUS")[-1].fields["STATUS"]
    # Only the main process talks to systemd (2.10's serve-logs gunicorn would send READY=1).
    assert {m.pid for m in sched.peer.messages} == {sched.proc.pid}


def test_sigterm_sends_stopping_and_exits_0(start_scheduler):
    sched = start_scheduler()
    ready(sched)
    sched.descendants()
    sched.proc.send_signal(signal.SIGTERM)
    assert sched.wait(30) == 0
    assert sched.peer.with_field("STOPPING", "1")
    assert not alive(sched.known_descendants)


def test_database_stopped_exits_nonzero_promptly_and_leaves_nothing(start_scheduler, pg):
    sched = start_scheduler()
    ready(sched)
    assert sched.descendants(), "expected helper processes (serve-logs, health check, workers)"
    pg.stop("immediate")
    stopped = time.monotonic()
    rc = sched.wait(10 + 5)
    assert rc != 0
    assert time.monotonic() - stopped < 10
    assert not alive(sched.known_descendants)
    assert sched.peer.with_field("STATUS")[-1].fields["STATUS"].startswith("failed:")


def test_frozen_database_stops_the_pings_and_thaw_resumes_them(start_scheduler, pg):
    sched = start_scheduler()
    ready(sched)
    time.sleep(WATCHDOG)
    pg.freeze()
    frozen = time.monotonic()
    time.sleep(3 * WATCHDOG)
    thawing = time.monotonic()  # from here on a ping is allowed: the database answers again
    pg.thaw()
    thawed = time.monotonic()
    # One iteration may still have been finishing when the freeze hit.
    assert not pings_between(sched, frozen + 1.5, thawing), "pinged while the database was frozen"
    deadline = thawed + 2 * WATCHDOG
    while not pings_between(sched, thawed, time.monotonic()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pings_between(sched, thawed, time.monotonic()), "pings did not resume after the thaw"
    assert sched.proc.poll() is None


def test_loop_blocked_on_a_lock_stops_the_pings(start_scheduler, pg, migrated_db):
    """What tells a loop-fed watchdog from a side-thread pinger: the DB is up, the loop is stuck."""
    sched = start_scheduler()
    ready(sched)
    dsn = migrated_db.replace("postgresql+psycopg2", "postgresql")
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")  # the heartbeat's UPDATE waits
        locked = time.monotonic()
        time.sleep(3 * WATCHDOG)
        assert not pings_between(sched, locked + 1.5, time.monotonic()), "pinged while the loop was blocked"
    finally:
        conn.rollback()
        released = time.monotonic()
        conn.close()
    deadline = released + 2 * WATCHDOG
    while not pings_between(sched, released, time.monotonic()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pings_between(sched, released, time.monotonic()), "pings did not resume after the lock"


def test_exception_in_loop_kills_stubborn_and_setsid_descendants(start_scheduler):
    sched = start_scheduler(fault="loop-exception")
    ready(sched)
    rc = sched.wait(60)
    failed = time.monotonic()
    report = json.loads(sched.fault_out.read_text())
    assert rc == 1
    assert "injected fault in the scheduler loop" in sched.text()
    assert "Traceback" in sched.text()
    assert not alive({report["child"], report["grandchild"]}), report
    assert not alive(sched.known_descendants)
    status = sched.peer.with_field("STATUS")[-1]
    assert "RuntimeError: injected fault" in status.fields["STATUS"]
    assert status.at <= failed
    # the clean-up is given time, so systemd sees the crash (exit 1), not a watchdog kill
    grant = sched.peer.with_field("WATCHDOG_USEC")
    assert grant and status.at <= grant[-1].at <= failed, [m.fields for m in sched.peer.messages[-3:]]
    assert int(grant[-1].fields["WATCHDOG_USEC"]) >= 20 * 1_000_000


def test_descendants_obey_sigterm_once_the_main_process_is_gone(start_scheduler):
    # SIGKILL or the watchdog's SIGABRT leaves no time for clean-up in the main process;
    # systemd (KillMode=control-group) then SIGTERMs the rest of the cgroup. Airflow's
    # SIGTERM handler returns without acting in a forked child (the LocalExecutor workers),
    # so without help they would outlive it until SIGKILL, TimeoutStopSec later.
    sched = start_scheduler()
    ready(sched)
    left = sched.descendants()
    assert left, "expected helper processes (executor workers, serve-logs)"
    sched.proc.kill()
    sched.wait(10)
    for pid in alive(left):
        os.kill(pid, signal.SIGTERM)  # what systemd sends to the remaining processes
    deadline = time.monotonic() + 10
    while alive(left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(left), {pid: psutil.Process(pid).cmdline() for pid in alive(left)}


def test_children_never_see_the_notify_variables(start_scheduler):
    sched = start_scheduler(fault="children-environ")
    ready(sched)
    deadline = time.monotonic() + 30
    while not sched.fault_out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    report = json.loads(sched.fault_out.read_text())
    for view in ("forked", "execd"):
        assert "AIRFLOW_HOME" in report[view]  # the report is real, not empty
        leaked = {k for k in report[view] if k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        assert not leaked, f"{view} child saw {leaked}"


def test_sigabrt_dumps_the_main_thread_stack(start_scheduler):
    sched = start_scheduler()
    ready(sched)
    sched.descendants()  # orphaned by the abort: under systemd the cgroup kill ends them
    sched.proc.send_signal(signal.SIGABRT)
    assert sched.wait(30) == -signal.SIGABRT
    text = sched.text()
    assert "Fatal Python error: Aborted" in text
    assert "Current thread" in text and "(most recent call first)" in text
    assert "_run_scheduler_loop" in text


def test_invalid_config_exits_78_with_one_line(start_scheduler):
    sched = start_scheduler(env={"AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "often"})
    assert sched.wait(60) == 78
    lines = config_error_lines(sched)
    assert len(lines) == 1 and "scheduler_heartbeat_sec" in lines[0].lower(), sched.text()[-2000:]
    assert "Traceback" not in sched.text()
    assert "configuration error" in sched.peer.with_field("STATUS")[-1].fields["STATUS"]


def test_malformed_database_url_exits_78(start_scheduler):
    sched = start_scheduler(db_url="postgresql+psycopg2://nobody@127.0.0.1:notaport/x")
    assert sched.wait(60) == 78, sched.text()[-2000:]
    assert len(config_error_lines(sched)) == 1


def test_database_never_migrated_exits_78_naming_the_fix(start_scheduler, pg):
    pg.sql("CREATE DATABASE never_migrated_" + str(id(pg) % 100000) + "_" + str(time.time_ns() % 10**6))
    name = pg.sql(
        "SELECT datname FROM pg_database WHERE datname LIKE 'never_migrated_%' ORDER BY oid DESC LIMIT 1"
    )
    sched = start_scheduler(db_url=pg.url(name))
    assert sched.wait(60) == 78
    lines = config_error_lines(sched)
    assert len(lines) == 1 and "airflow db migrate" in lines[0], sched.text()[-2000:]


def test_unsupported_airflow_version_exits_78_naming_what_is_supported(start_scheduler):
    sched = start_scheduler(fault="unsupported-version")
    assert sched.wait(60) == 78, sched.text()[-2000:]
    lines = config_error_lines(sched)
    assert len(lines) == 1 and "Airflow 2.9.3 is not supported" in lines[0], sched.text()[-2000:]
    assert "2.10.x, 2.11.x and 3.x" in lines[0]


def test_airflow_without_the_hook_point_exits_78_instead_of_running_unwatched(start_scheduler):
    sched = start_scheduler(fault="no-hook-point")
    assert sched.wait(60) == 78, sched.text()[-2000:]
    lines = config_error_lines(sched)
    assert len(lines) == 1 and "has no perform_heartbeat" in lines[0], sched.text()[-2000:]
    assert not sched.peer.with_field("READY")


def test_watchdog_shorter_than_heartbeat_allows_exits_78_naming_the_minimum(start_scheduler):
    sched = start_scheduler(watchdog=1.5)  # heartbeat 1 s: needs at least 2 s
    assert sched.wait(60) == 78
    lines = config_error_lines(sched)
    assert len(lines) == 1 and "at least 2s" in lines[0], sched.text()[-2000:]


def test_waits_for_a_database_that_is_down_at_start(start_scheduler, pg):
    # Retries back off to 5 s and stay there, so the scheduler is up at most 5 s after its
    # database; only attempts 1, 2, 4, 8... are logged, so a long outage does not flood the log.
    pg.stop("immediate")
    sched = start_scheduler()
    deadline = time.monotonic() + 120
    while not waiting_statuses(sched, "(attempt 7,") and time.monotonic() < deadline:
        assert sched.proc.poll() is None, f"gave up instead of waiting:\n{sched.text()[-2000:]}"
        time.sleep(0.2)
    statuses = waiting_statuses(sched)
    retries = [float(re.search(r"retry in (\d+(?:\.\d+)?)s", s).group(1)) for s in statuses]
    assert retries[:7] == [1, 2, 4, 5, 5, 5, 5], statuses
    assert all(
        "EXTEND_TIMEOUT_USEC" in m.fields
        for m in sched.peer.messages
        if "waiting for the metadata database" in m.fields.get("STATUS", "")
    )
    logged = [line for line in sched.text().splitlines() if "metadata database unreachable" in line]
    assert len(logged) == 3, logged  # attempts 1, 2 and 4 of 7
    threading.Thread(target=pg.start).start()
    ready(sched)


def waiting_statuses(sched, containing: str = "") -> list[str]:
    return [
        m.fields["STATUS"]
        for m in sched.peer.with_field("STATUS")
        if "waiting for the metadata database" in m.fields["STATUS"] and containing in m.fields["STATUS"]
    ]


def test_without_notify_socket_it_runs_and_heartbeats(start_scheduler, migrated_db):
    sched = start_scheduler(notify=False)
    dsn = migrated_db.replace("postgresql+psycopg2", "postgresql")

    def job():
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT state, extract(epoch FROM now() - latest_heartbeat) FROM job "
                "WHERE job_type = 'SchedulerJob' ORDER BY id DESC LIMIT 1"
            )
            return cur.fetchone()

    # Without READY=1 to wait for, wait for its job row (start-up takes long on a busy machine),
    # then for a few heartbeats more.
    deadline = time.monotonic() + 120
    while job() is None:
        assert sched.proc.poll() is None and time.monotonic() < deadline, sched.text()[-2000:]
        time.sleep(0.5)
    time.sleep(5)
    assert sched.proc.poll() is None, sched.text()[-2000:]
    state, age = job()
    assert state == "running" and age < 5
    sched.proc.send_signal(signal.SIGTERM)
    assert sched.wait(30) == 0
