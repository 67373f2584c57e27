"""Tasks get the environment of an activated Airflow virtualenv (issue 17).

Under the shipped, hardened units: the operators that need the virtualenv's `python` and
`airflow` on PATH succeed, and everything else a task sees either matches a plain
`airflow dags test` from an activated virtualenv or is a difference kept on purpose
(tests/harness/task_environment.py lists each with its reason).
"""

from __future__ import annotations

import json

from tests.harness import task_environment
from tests.harness.deployment import VENV

TASKS = ("virtualenv", "external_python", "airflow_cli", "write_file", "read_file")


def test_virtualenv_external_python_and_airflow_cli_tasks_run_under_the_units(tasks):
    d = tasks
    dag = d.add_dag("afsd_task_environment")
    run = d.trigger(dag)
    try:
        d.wait_for(lambda: d.run_state(dag, run) in ("success", "failed"), 300, "the DAG run to finish")
        states = {task: d.task_state(dag, run, task) for task in TASKS}
        logs = {
            task: d.sb.sh(
                f"cat /var/log/airflow/dag_id={dag}/run_id={run}/task_id={task}/*.log", check=False
            ).stdout
            for task in TASKS
        }
        failed = {task: _events(logs[task])[-40:] for task, state in states.items() if state != "success"}
        assert states == dict.fromkeys(TASKS, "success"), f"{states}\n{failed}"
        for task, marker in (("virtualenv", "AFSD-VENV-OK"), ("external_python", "AFSD-EXTERNAL-OK")):
            assert marker in logs[task], marker
        assert "AFSD-CLI-OK" in logs["airflow_cli"]
    finally:
        d.retire(dag)


def test_a_task_sees_what_an_activated_virtualenv_gives_it_or_a_documented_difference(tasks):
    units = task_environment.facts_under_the_units(tasks)
    plain = task_environment.facts_plain(tasks)
    rows = task_environment.compare(units, plain)
    print("\n" + task_environment.table(rows))
    assert units["PATH"].split(":")[0] == f"{VENV}/bin"
    assert units["VIRTUAL_ENV"] == str(VENV)
    for key in task_environment.SAME:
        assert units[key] == plain[key], (key, units[key], plain[key])
    unexplained = [(key, a, b) for key, a, b, why in rows if why == "NOT EXPLAINED"]
    assert unexplained == [], unexplained


def _events(log: str) -> list[str]:
    """The messages of a task log (JSON lines on Airflow 3, text on 2.10)."""
    events = []
    for line in log.splitlines():
        try:
            events.append(str(json.loads(line).get("event")))
        except ValueError:
            events.append(line)
    return events
