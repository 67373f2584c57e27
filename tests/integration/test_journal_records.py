"""A real scheduler runs a task with its output as the journal stream: its records are the
events alone, with no timestamp, level or logger name of Airflow's in them.

The scheduler's output file is the journal stream (JOURNAL_STREAM names its device and inode).
With systemd-python, its native entries are recorded instead of sent (a ``sitecustomize`` on
the test's PYTHONPATH replaces ``systemd.journal.sendv``); without it (a ``systemd`` package
that cannot be imported, first on the test's PYTHONPATH) it writes sd-daemon ``<N>`` lines to
the file. In Airflow 3 a task needs the DAG processor and the API server too; they log as
before. Run with ``-s`` to see the records (the sample in docs/journal.md comes from here).
"""

from __future__ import annotations

import json
import re
import time

import airflow
import pytest

from tests.harness.journal_stream import journal_stream_env, recording_path
from tests.harness.pgcluster import free_port

AIRFLOW_3 = airflow.__version__.startswith("3.")

DAG = """
import logging
import pendulum
try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

with DAG("afsd_journal", schedule="@once", start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    @task
    def hello():
        logging.getLogger("afsd.journal").warning("hello from the task")
        return 42

    hello()
"""


HIDE_SYSTEMD_PYTHON = 'raise ImportError("systemd-python hidden by the test")\n'


def start(start_component, tmp_path, native: bool):
    """The scheduler (index 0, its output the journal stream) and what it needs."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "afsd_journal.py").write_text(DAG)
    path = tmp_path / "path"
    if native:
        recording_path(path)
    else:
        (path / "systemd").mkdir(parents=True)
        (path / "systemd" / "__init__.py").write_text(HIDE_SYSTEMD_PYTHON)
    api_port = free_port()
    shared = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "integration-tests-only-jwt-secret-0123456789abcdef",
        "AIRFLOW__API__SECRET_KEY": "integration-tests-only-secret-key",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
    }
    output = tmp_path / "scheduler0.log"  # what components.start opens (truncates) for index 0
    scheduler = start_component(
        "scheduler", env={**shared, **journal_stream_env(output, path, tmp_path / "journal.jsonl")}
    )
    assert scheduler.output == output
    if AIRFLOW_3:
        # The task reports to the API server: it answers before the DAG is parsed, so before
        # any task can be queued (a busy machine starts it slowly).
        wait_ready(start_component("api-server", "--port", str(api_port), "--workers", "1", env=shared))
        start_component("dag-processor", env=shared)
    return scheduler


def wait_ready(component) -> None:
    deadline = time.monotonic() + 180
    while not component.peer.with_field("READY", "1"):
        if component.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no READY=1; rc={component.proc.poll()}\n{component.text()[-3000:]}")
        time.sleep(0.2)


def wait_for(scheduler, read, pattern: str) -> None:
    deadline = time.monotonic() + 240
    while not re.search(pattern, read(), re.M):
        if scheduler.proc.poll() is not None or time.monotonic() > deadline:
            seen = read()[-3000:] or scheduler.text()[-3000:]
            pytest.fail(f"no {pattern!r}; rc={scheduler.proc.poll()}\n{seen}")
        time.sleep(1)


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
LEVEL = re.compile(r"^\[|\[\s*(debug|info|warning|error)\s*\]|\b(INFO|WARNING|ERROR) -")


def assert_clean(text: str) -> None:
    assert not LEVEL.search(text), text
    assert not TIMESTAMP.match(text), text
    assert "loc=" not in text and "[airflow." not in text, text


def test_a_task_run_s_entries_are_the_events_with_their_fields(start_component, tmp_path):
    scheduler = start(start_component, tmp_path, native=True)
    journal = tmp_path / "journal.jsonl"
    wait_for(scheduler, lambda: journal.read_text() if journal.exists() else "", "DagRun Finished")
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    print(*(json.dumps(e) for e in entries[-30:]), sep="\n")
    for entry in entries:
        assert_clean(entry["MESSAGE"])
        assert entry.get("CODE_FILE", "x") and entry.get("CODE_LINE", "1") != "0", entry
    if AIRFLOW_3:  # Airflow 2 writes a task's lines to its log file only
        (hello,) = [e for e in entries if e["MESSAGE"].startswith("hello from the task")]
        assert hello["MESSAGE"] == "hello from the task"  # the identifiers are fields
        assert (hello["DAG_ID"], hello["TASK_ID"], hello["TRY_NUMBER"]) == ("afsd_journal", "hello", "1")
        assert re.fullmatch(r"[0-9a-f-]{36}", hello["TI_ID"]), hello
        assert (hello["PRIORITY"], hello["LOGGER"], hello["CODE_FILE"]) == (
            "4",
            "afsd.journal",
            "afsd_journal.py",
        )
    (finished,) = [e for e in entries if e["MESSAGE"].startswith("DagRun Finished")]
    assert finished["CODE_FILE"].endswith("dagrun.py") and int(finished["CODE_LINE"]) > 0, finished
    assert finished["LOGGER"].startswith("airflow.models.dagrun"), finished
    # Nothing went to the stream as well (Airflow's banner is a print of its own).
    assert "DagRun Finished" not in scheduler.text() and "hello from the task" not in scheduler.text()


def test_without_systemd_python_a_task_run_s_lines_are_the_same_text(start_component, tmp_path):
    scheduler = start(start_component, tmp_path, native=False)
    wait_for(scheduler, scheduler.text, r"^<\d>DagRun Finished")
    lines = scheduler.text().splitlines()
    print(*lines[-30:], sep="\n")
    for line in lines:
        if line.startswith("<"):  # not through Airflow's logging otherwise (a child's stray print)
            assert_clean(line[3:])
    assert any(line.startswith("<6>DagRun Finished: dag_id=afsd_journal") for line in lines)
    if AIRFLOW_3:  # Airflow 2 writes a task's lines to its log file only
        (hello,) = [line for line in lines if "hello from the task" in line]
        assert hello.startswith("<4>hello from the task ")
        assert "dag_id=afsd_journal" in hello and "task_id=hello" in hello  # no fields: in the text
