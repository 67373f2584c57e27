"""The scheduler unit under a real systemd (the sandbox), Airflow 3.3.2 or 2.10.5, PostgreSQL.

Each test starts from a stopped unit and a running, thawed database. Bounds are generous:
bench/ measures; these assert behaviour.
"""

from __future__ import annotations

import json
import os
import re
import time

from tests.harness.deployment import FAULTS_INSIDE, SCHEDULER, WATCHDOG, running_loop

OUTAGE = float(os.environ.get("AFSD_DB_OUTAGE_SECONDS", "180"))


def test_start_returns_only_after_ready_and_status_shows_the_loop(unit):
    unit.sb.systemctl("start", "airflow-db-migrate.service")  # the scheduler Requires= it
    unit.sb.systemctl("start", "--no-block", SCHEDULER)
    time.sleep(0.5)
    assert unit.state() == "activating/start"  # Type=notify: no READY=1 yet
    unit.wait_for(lambda: unit.state() == "active/running", 90, "READY=1")
    unit.sb.systemctl("stop", SCHEDULER)

    unit.sb.systemctl("start", SCHEDULER)  # blocks until READY=1
    assert unit.state() == "active/running"
    assert unit.props()["StatusText"].startswith("running: loop")
    status = unit.sb.systemctl("status", "--no-pager", SCHEDULER, check=False).stdout
    assert re.search(r'Status: "running: loop \d+, heartbeat \d+s ago', status), status


def test_stop_ends_within_the_stop_timeout_and_empties_the_cgroup(unit):
    unit.sb.systemctl("start", SCHEDULER)
    assert len(unit.cgroup_pids()) >= 3  # main + serve-logs + health check + workers
    cgroup = unit.props()["ControlGroup"]
    t0 = time.monotonic()
    unit.sb.systemctl("stop", SCHEDULER)
    assert time.monotonic() - t0 < 30
    p = unit.props()
    assert (p["ActiveState"], p["Result"], p["ExecMainStatus"]) == ("inactive", "success", "0")
    assert unit.sb.exec("test", "-e", f"/sys/fs/cgroup{cgroup}", check=False).returncode != 0


def test_bad_config_fails_once_with_one_line_and_no_restart_storm(unit):
    cursor = unit.cursor()
    unit.configure(AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="often")
    assert unit.sb.systemctl("start", SCHEDULER, check=False).returncode != 0
    unit.wait_for(lambda: unit.state() == "failed/failed", 60, "failed")
    time.sleep(12)  # longer than RestartSec=10s: a restart would have happened by now
    p = unit.props()
    assert (p["NRestarts"], p["ExecMainStatus"], p["Result"]) == ("0", "78", "exit-code")
    lines = [line for line in unit.journal(cursor).splitlines() if "configuration error" in line]
    assert len(lines) == 1 and "scheduler_heartbeat_sec" in lines[0].lower(), lines


def test_frozen_database_watchdog_kills_then_it_recovers_after_the_thaw(unit):
    unit.sb.systemctl("start", SCHEDULER)
    first_main = unit.props()["MainPID"]
    cursor = unit.cursor()
    unit.pg.freeze()
    frozen = time.time()
    unit.wait_for(lambda: "Watchdog timeout" in unit.journal(cursor), WATCHDOG + 30, "the watchdog")
    entry = next(e for e in unit.journal_json(cursor) if "Watchdog timeout" in e.get("MESSAGE", ""))
    killed_after = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - frozen
    assert killed_after <= WATCHDOG + 5, f"watchdog fired {killed_after:.1f}s after the freeze"
    text = unit.wait_for(
        lambda: (t := unit.journal(cursor)) and "Fatal Python error: Aborted" in t and t, 30, "the stack dump"
    )
    assert "SIGABRT" in text or "signal=ABRT" in text or "status=6/ABRT" in text
    assert "_run_scheduler_loop" in text  # where it hung, from faulthandler
    unit.pg.thaw()
    unit.wait_for(
        lambda: int(unit.props()["NRestarts"]) >= 1 and running_loop(unit),
        150,
        "restart and scheduling after the thaw",
    )
    assert unit.props()["MainPID"] != first_main
    unit.assert_no_strays()


def test_database_outage_ends_active_again_without_operator_action(unit):
    unit.sb.systemctl("start", SCHEDULER)
    cursor = unit.cursor()
    unit.pg.stop("immediate")
    unit.wait_for(lambda: unit.props()["ExecMainStatus"] == "1", 30, "exit 1 after the database went away")
    end = time.monotonic() + OUTAGE
    while time.monotonic() < end:
        unit.assert_no_strays()
        assert unit.props()["Result"] != "start-limit-hit"
        time.sleep(5)
    assert "waiting for the metadata database" in unit.journal(cursor)
    assert unit.state() == "activating/start", "it should be waiting for the database, in start-up"
    unit.pg.start()
    unit.wait_for(lambda: running_loop(unit), 90, "scheduling again once the database is back")
    restarts = int(unit.props()["NRestarts"])
    assert 1 <= restarts <= 2, f"{restarts} restarts for one outage"
    assert "Start request repeated too quickly" not in unit.journal(cursor)
    unit.assert_no_strays()


def test_loop_exception_with_stubborn_descendants_empties_the_cgroup_and_restarts(unit):
    unit.configure(
        PYTHONPATH=FAULTS_INSIDE,
        AFSD_TEST_FAULT="loop-exception",
        AFSD_TEST_OUT="/var/lib/airflow/fault.json",
        AFSD_TEST_FAULT_ONCE="/var/lib/airflow/fault.once",
    )
    unit.sb.systemctl("start", SCHEDULER)
    unit.sb.exec(
        "install", "-o", "airflow", "-g", "airflow", "-m", "0644", "/dev/null", "/var/lib/airflow/fault.once"
    )
    first_main = unit.props()["MainPID"]
    unit.wait_for(
        lambda: unit.props()["MainPID"] != first_main and running_loop(unit),
        120,
        "the restart after the injected exception",
    )
    report = json.loads(unit.sb.exec("cat", "/var/lib/airflow/fault.json").stdout)
    for pid in (report["child"], report["grandchild"]):
        assert unit.sb.exec("test", "-d", f"/proc/{pid}", check=False).returncode != 0, report
    unit.assert_no_strays()
    assert int(unit.props()["NRestarts"]) == 1


def test_merged_unit_verifies_and_exposure_is_at_most_1_5(unit):
    unit_file = f"/etc/systemd/system/{SCHEDULER}"
    verify = unit.sb.exec("systemd-analyze", "verify", unit_file, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    out = unit.sb.exec("systemd-analyze", "security", "--no-pager", SCHEDULER, check=False).stdout
    level = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    assert level <= 1.5, out[-2000:]
