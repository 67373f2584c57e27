"""last_run.py: the record of how a unit's last run ended, as the alert writes it and the
service reads it back at start (the restart report itself is in test_journal.py)."""

from __future__ import annotations

import json
import time

from airflow_systemd.last_run import Stop, booted_at, previous_stop, run_file

UNIT = "airflow-scheduler.service"


def test_a_stop_comes_from_exec_stop_posts_or_on_failures_variables():
    after_run = {"SERVICE_RESULT": "watchdog", "EXIT_CODE": "dumped", "EXIT_STATUS": "ABRT"}
    assert Stop.from_environ(after_run) == Stop("watchdog", "dumped", "ABRT", "")
    monitor = {"MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_INVOCATION_ID": "inv1", "SERVICE_RESULT": "x"}
    assert Stop.from_environ(monitor, "MONITOR_") == Stop("exit-code", invocation_id="inv1")


def test_a_record_holds_only_what_is_known_and_reads_back_the_same():
    stop = Stop("exit-code", "exited", "1", "inv1", time=12.5, restarts=True)
    assert stop.record() == {
        "result": "exit-code",
        "exit_code": "exited",
        "exit_status": "1",
        "invocation_id": "inv1",
        "time": 12.5,
        "restarts": True,
    }
    assert Stop.from_record(json.loads(json.dumps(stop.record()))) == stop
    assert "state" not in stop.record()


def test_what_is_not_a_record_reads_as_none_and_unknown_keys_are_ignored():
    assert Stop.from_record(None) is None
    assert Stop.from_record(["exit-code"]) is None
    assert Stop.from_record({"result": "success", "later": 1}) == Stop("success")


def test_previous_stop_is_the_record_of_this_boot_only(tmp_path):
    assert previous_stop(UNIT, str(tmp_path)) is None  # never recorded: a first start
    path = tmp_path / "runs" / f"{UNIT}.json"
    assert str(path) == run_file(str(tmp_path), UNIT)
    path.parent.mkdir()
    now = Stop("exit-code", "exited", "1", "inv1", time=time.time())
    path.write_text(json.dumps({"last_stop": now.record()}))
    assert previous_stop(UNIT, str(tmp_path)) == now
    before_boot = Stop("exit-code", "exited", "1", "inv0", time=booted_at() - 60)
    path.write_text(json.dumps({"last_stop": before_boot.record()}))
    assert previous_stop(UNIT, str(tmp_path)) is None
    path.write_text("not json")
    assert previous_stop(UNIT, str(tmp_path)) is None
