"""DAG tasks run inside the scheduler unit (LocalExecutor): its sandbox confines them too."""

from __future__ import annotations

import time

from tests.harness.deployment import SCHEDULER, WATCHDOG, running_loop


def test_tasks_run_under_the_hardened_unit_and_their_logs_are_readable(tasks):
    dag = tasks.add_dag("afsd_hardening_probe")
    run = tasks.trigger(dag)
    try:
        state = tasks.wait_for(
            lambda: tasks.run_state(dag, run) in ("success", "failed") and tasks.run_state(dag, run),
            180,
            "the DAG run to finish",
        )
        log = tasks.sb.exec(
            "runuser",
            "-u",
            "airflow",
            "--",
            "sh",
            "-c",
            f"cat /var/log/airflow/dag_id={dag}/run_id={run}/task_id=probe/attempt=1.log",
            check=False,
        )
        assert state == "success", log.stdout[-3000:] + log.stderr + tasks.journal_tail(lines=60)
        assert "AFSD-PROBE-OK" in log.stdout
    finally:
        tasks.retire(dag)


def test_a_task_cannot_speak_for_the_scheduler_and_the_watchdog_still_fires(tasks):
    dag = tasks.add_dag("afsd_notify_intruder")
    cursor = tasks.cursor()
    run = tasks.trigger(dag)
    try:
        tasks.wait_for(lambda: tasks.task_state(dag, run, "intrude") == "running", 120, "the intruder task")
        tasks.wait_for(
            lambda: "reception only permitted for main PID" in tasks.journal(cursor),
            30,
            "systemd to refuse the task's messages",
        )
        assert tasks.props()["StatusText"] != "intruder"
        assert tasks.state() == "active/running"  # STOPPING=1 from the task was ignored too
        tasks.pg.freeze()
        tasks.wait_for(
            lambda: "Watchdog timeout" in tasks.journal(cursor),
            WATCHDOG + 30,
            "the watchdog despite the task's WATCHDOG=1",
        )
        tasks.pg.thaw()
        tasks.wait_for(lambda: running_loop(tasks), 150, "the restarted scheduler")
    finally:
        tasks.pg.thaw()
        tasks.retire(dag)


def test_stop_while_a_task_runs_ends_inside_the_stop_timeout_as_inactive(tasks):
    dag = tasks.add_dag("afsd_long_task")
    run = tasks.trigger(dag)
    try:
        tasks.wait_for(lambda: tasks.task_state(dag, run, "sleep") == "running", 120, "the long task")
        t0 = time.monotonic()
        tasks.sb.systemctl("stop", SCHEDULER)
        took = time.monotonic() - t0
        p = tasks.props()
        assert took < 30, f"stop took {took:.1f}s"
        assert (p["ActiveState"], p["Result"]) == ("inactive", "success"), p
    finally:
        tasks.retire(dag)
