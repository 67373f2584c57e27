"""Airflow's own records in the journal, through the logging Airflow itself configures.

Each test runs a small script in a fresh interpreter: ``import airflow`` sets up Airflow's
logging (structlog and its ProcessorFormatter in Airflow 3, stdlib formatters in Airflow 2),
the script's stdout and stderr count as the journal stream (JOURNAL_STREAM), and
:func:`adopt_airflow_logging` takes over as under systemd. Native entries go to a recording
``sender_function`` (the real journald is the system tests' business); without systemd-python
the ``<N>`` lines are read from stdout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.harness.airflow_env import CHECKOUT

AIRFLOW_3 = importlib.util.find_spec("structlog") is not None

PRELUDE = """
import json, logging, os, sys
if {no_systemd}:
    sys.modules["systemd"] = None  # not importable
st = os.fstat(1)
os.environ["JOURNAL_STREAM"] = f"{{st.st_dev}}:{{st.st_ino}}"
from airflow_systemd import journal
entries = []
def sender(MESSAGE, **fields):
    entries.append({{"MESSAGE": MESSAGE, **{{k: str(v) for k, v in fields.items() if k.isupper()}}}})
if journal.JournalHandler is not None:
    journal.native_handler = lambda: journal._NativeHandler(sender_function=sender, **journal._identity)
journal.setup("scheduler")
import airflow  # Airflow configures its logging
from airflow_systemd.airflow.logging import adopt_airflow_logging
adopt_airflow_logging()
"""


def run(tmp_path: Path, body: str, *, native: bool = True) -> tuple[list[dict], str, Path]:
    """Run ``body`` after the prelude; the native entries, stdout (= stderr), and the script."""
    script = tmp_path / "records.py"
    script.write_text(
        PRELUDE.format(no_systemd=not native)
        + textwrap.dedent(body)
        + "\njson.dump(entries, open(os.environ['ENTRIES'], 'w'))\n"
    )
    out = tmp_path / "entries.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), PYTHONPATH=str(CHECKOUT), ENTRIES=str(out))
    result = subprocess.run(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, as systemd connects them
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    return json.loads(out.read_text()), result.stdout, script


def line_of(script: Path, text: str) -> str:
    return str(next(i for i, line in enumerate(script.read_text().splitlines(), 1) if text in line))


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
LEVEL = re.compile(r"\[\s*(debug|info|warning|error|critical)\s*\]|\b(INFO|WARNING|ERROR)\b", re.IGNORECASE)


def assert_clean(message: str, logger: str) -> None:
    assert not TIMESTAMP.search(message), message
    assert not LEVEL.search(message), message
    assert logger not in message, message
    assert "loc=" not in message, message


STRUCTLOG_BODY = """
from airflow.utils.log.logging_mixin import LoggingMixin

class SchedulerJobRunner(LoggingMixin):
    def finished(self):
        self.log.info(  # finished here
            "TaskInstance Finished", dag_id="etl", task_id="load", run_id="manual__1", try_number=2,
            map_index=-1, ti_id="0199a1b2-c3d4", state="success", duration=1.25,
        )
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.exception("Executor reports failure", dag_id="etl")  # failed here

SchedulerJobRunner().finished()
"""


def test_structlog_records_are_the_event_with_logger_source_and_identifiers_as_fields(tmp_path):
    entries, stdout, script = run(tmp_path, STRUCTLOG_BODY)
    finished, failed = entries
    logger = "__main__.SchedulerJobRunner"
    assert finished["MESSAGE"] == "TaskInstance Finished state=success duration=1.25"
    assert_clean(finished["MESSAGE"], logger)
    assert finished["LOGGER"] == logger
    assert (finished["CODE_FILE"], finished["CODE_FUNC"]) == (str(script), "finished")
    assert finished["CODE_LINE"] == line_of(script, "# finished here")
    assert {k: finished[k] for k in ("DAG_ID", "RUN_ID", "TASK_ID", "TRY_NUMBER", "TI_ID")} == {
        "DAG_ID": "etl",
        "RUN_ID": "manual__1",
        "TASK_ID": "load",
        "TRY_NUMBER": "2",
        "TI_ID": "0199a1b2-c3d4",
    }
    assert "MAP_INDEX" not in finished  # -1: not a mapped task
    assert finished["PRIORITY"] == "6"
    first, *traceback = failed["MESSAGE"].splitlines()
    assert first == "Executor reports failure"
    assert traceback[0] == "Traceback (most recent call last):" and traceback[-1].startswith(
        "ZeroDivisionError"
    )
    assert (failed["PRIORITY"], failed["CODE_LINE"]) == ("3", line_of(script, "# failed here"))
    assert stdout == ""  # nothing went to the stream as well


def test_task_lines_copied_by_the_supervisor_keep_the_task_s_own_source(tmp_path):
    """The LocalExecutor's supervisor re-logs each JSON line of the task process: the source is
    the task's (file name and line, all the line carries), never the supervisor's."""
    body = """
    import structlog
    from airflow.sdk.execution_time.supervisor import process_log_messages_from_subprocess

    copy = process_log_messages_from_subprocess((structlog.get_logger(logger_name="task"),))
    next(copy)
    copy.send(json.dumps({
        "timestamp": "2026-12-01T08:38:11.699916Z", "level": "info", "event": "Done. Returned value was: 42",
        "logger": "airflow.task.operators", "filename": "python.py", "lineno": 217,
        "dag_id": "etl", "task_id": "load", "run_id": "manual__1", "try_number": 1,
    }).encode())
    """
    (entry,), _, _ = run(tmp_path, body)
    assert entry["MESSAGE"] == "Done. Returned value was: 42"
    assert (entry["LOGGER"], entry["CODE_FILE"], entry["CODE_LINE"]) == (
        "airflow.task.operators",
        "python.py",
        "217",
    )
    assert "CODE_FUNC" not in entry
    assert (entry["DAG_ID"], entry["TASK_ID"], entry["TRY_NUMBER"]) == ("etl", "load", "1")


if not AIRFLOW_3:  # Airflow 2 has no structlog: not collected rather than skipped (CI=true)
    del test_structlog_records_are_the_event_with_logger_source_and_identifiers_as_fields
    del test_task_lines_copied_by_the_supervisor_keep_the_task_s_own_source


STDLIB_BODY = """
def parse():
    logging.getLogger("airflow.models.dagbag").warning(  # stdlib here
        "Failed to import %s", "etl.py", extra={"dag_id": "etl", "ti_id": "0199a1b2"}
    )

parse()
"""


def test_stdlib_records_are_the_message_with_their_own_source(tmp_path):
    (entry,), stdout, script = run(tmp_path, STDLIB_BODY)
    assert entry["MESSAGE"] == "Failed to import etl.py"
    assert_clean(entry["MESSAGE"], "airflow.models.dagbag")
    assert entry["LOGGER"] == "airflow.models.dagbag"
    assert (entry["CODE_FILE"], entry["CODE_FUNC"]) == (str(script), "parse")
    assert entry["CODE_LINE"] == line_of(script, "# stdlib here")
    assert (entry["PRIORITY"], entry["DAG_ID"], entry["TI_ID"]) == ("4", "etl", "0199a1b2")
    assert stdout == ""


def test_without_systemd_python_the_lines_are_the_same_clean_text(tmp_path):
    body = STRUCTLOG_BODY + STDLIB_BODY if AIRFLOW_3 else STDLIB_BODY
    entries, stdout, _ = run(tmp_path, body, native=False)
    assert entries == []
    lines = stdout.splitlines()
    assert "<4>Failed to import etl.py" in lines
    if AIRFLOW_3:  # no fields to carry them: the identifiers stay in the text
        assert lines[0] == (
            "<6>TaskInstance Finished dag_id=etl task_id=load run_id=manual__1 try_number=2"
            " map_index=-1 ti_id=0199a1b2-c3d4 state=success duration=1.25"
        )
        assert lines[1] == "<3>Executor reports failure dag_id=etl"
        assert lines[2] == "<3>Traceback (most recent call last):"
    for line in lines:
        assert re.match(r"<[0-7]>", line), line
        assert_clean(line, "SchedulerJobRunner")
