"""journal.py, airflow/logging.py and last_run.py: what reaches the journal, with which fields,
and what stays as it was.

The native path is checked through systemd-python's JournalHandler with a recording
``sender_function``; the real journald is the system tests' business.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_systemd import journal, last_run
from airflow_systemd.airflow import logging as airflow_logging
from airflow_systemd.lifecycle import Lifecycle
from airflow_systemd.services.job import JobLoop
from airflow_systemd.services.probe import Probe

pytest.importorskip("systemd.journal")


class Sent(list):
    """What the handler would have sent: one dict of fields per entry."""

    def __call__(self, MESSAGE, **fields):
        self.append({"MESSAGE": MESSAGE, **{k: str(v) for k, v in fields.items() if k.isupper()}})


@pytest.fixture
def sent(monkeypatch):
    """The airflow_systemd logger set up as under the journal, sending to a list."""
    entries = Sent()
    monkeypatch.setattr(journal, "is_journal_stream", lambda fd, environ=None: True)
    monkeypatch.setattr(
        journal,
        "native_handler",
        lambda: journal._NativeHandler(sender_function=entries, **journal._identity),
    )
    journal.setup("scheduler")
    yield entries
    journal.setup("test")  # back to plain stderr lines
    monkeypatch.undo()
    journal.setup("test")


def test_priority_follows_journal_handler():
    from systemd.journal import JournalHandler

    for level in (
        5,
        logging.DEBUG,
        15,
        logging.INFO,
        logging.WARNING,
        35,
        logging.ERROR,
        logging.CRITICAL,
        60,
    ):
        assert journal.priority(level) == JournalHandler.map_priority(level)


def test_message_ids_are_distinct_128_bit_ids():
    ids = list(journal.EVENTS)
    assert len(ids) == len(set(ids)) == 13
    assert all(len(i) == 32 and int(i, 16) for i in ids)


def test_catalog_explains_every_event():
    from airflow_systemd.install import render

    text = render.template_text(journal.CATALOG)
    entries = {line[3:].strip() for line in text.splitlines() if line.startswith("-- ")}
    assert entries == set(journal.EVENTS)


def test_is_journal_stream_compares_device_and_inode():
    a, b = socket.socketpair()
    try:
        st = os.fstat(a.fileno())
        assert journal.is_journal_stream(a.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal.is_journal_stream(b.fileno(), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal.is_journal_stream(a.fileno(), {})
        assert not journal.is_journal_stream(a.fileno(), {"JOURNAL_STREAM": "garbage"})
    finally:
        a.close()
        b.close()


def test_event_is_a_native_entry_with_its_fields(sent):
    assert journal.active()
    journal.event(journal.READY, "ready after 1.0s: running", STARTUP_SECONDS="1.0", SKIPPED=None)
    journal.event(journal.CRASHED, "failed", level=logging.ERROR, EXCEPTION_TYPE="RuntimeError")
    ready, crashed = sent
    assert ready["MESSAGE"] == "ready after 1.0s: running"
    assert ready["MESSAGE_ID"] == journal.READY
    assert ready["PRIORITY"] == "6"
    assert ready["SYSLOG_IDENTIFIER"] == "airflow-scheduler"
    assert ready["AIRFLOW_COMPONENT"] == "scheduler"
    assert ready["STARTUP_SECONDS"] == "1.0"
    assert "SKIPPED" not in ready
    assert (crashed["PRIORITY"], crashed["EXCEPTION_TYPE"]) == ("3", "RuntimeError")


def test_outside_the_journal_lines_are_as_before(capfd):
    journal.setup("scheduler")
    assert not journal.active()
    journal.event(journal.READY, "ready after 1.0s")
    assert capfd.readouterr().err == "INFO airflow-systemd: ready after 1.0s\n"


def test_without_systemd_python_lines_get_priority_prefixes(tmp_path):
    """stderr is the journal stream but systemd-python is missing: <N> prefixes, per line."""
    script = textwrap.dedent(
        """
        import logging, os, sys
        sys.modules["systemd"] = None  # not importable
        st = os.fstat(2)
        os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        from airflow_systemd import journal
        journal.setup("triggerer")
        assert journal.active()
        journal.event(journal.DB_UNREACHABLE, "unreachable", level=logging.WARNING)
        journal.log.error("two\\nlines")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["<4>unreachable", "<3>two", "<3>lines"]


def test_airflow_fields_from_keys_and_from_a_task_instance():
    assert airflow_logging.airflow_fields(
        {"dag_id": "d", "run_id": "r", "task_id": "t", "try_number": 2, "map_index": -1, "ti_id": "u", "x": 1}
    ) == {"DAG_ID": "d", "RUN_ID": "r", "TASK_ID": "t", "TRY_NUMBER": "2", "TI_ID": "u"}

    class TI:
        dag_id, run_id, task_id, try_number, map_index, id = "d2", "r2", "t2", 1, 3, "u2"

    assert airflow_logging.airflow_fields({"task_instance": TI()}) == {
        "DAG_ID": "d2",
        "RUN_ID": "r2",
        "TASK_ID": "t2",
        "TRY_NUMBER": "1",
        "MAP_INDEX": "3",
        "TI_ID": "u2",
    }
    assert airflow_logging.airflow_fields({"msg": "x"}) == {}


def test_message_text_is_the_event_then_other_key_values_then_the_exception():
    try:
        raise ValueError("bad")
    except ValueError as e:
        error = e
    event = {
        "event": "Task failed",
        "timestamp": "2026-12-01T08:38:11Z",
        "level": "error",
        "logger": "airflow.task",
        "loc": "x.py:1",
        "dag_id": "etl",
        "ti_id": "u",
        "note": "two words",
        "rows": 3,
        "exc_info": error,
    }
    text = airflow_logging.message_text(event)
    first, *rest = text.splitlines()
    assert first == "Task failed note='two words' rows=3"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: bad"
    assert airflow_logging.message_text(event, identifiers=True).startswith(
        "Task failed dag_id=etl ti_id=u note='two words' rows=3\n"
    )


@pytest.fixture
def console(monkeypatch):
    """A logger with a console handler on a stream that counts as the journal."""
    stream = io.StringIO()
    logger = logging.getLogger("afsd-test-airflow")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    handler.addFilter(lambda record: setattr(record, "msg", str(record.msg).replace("s3cret", "***")) or True)
    logger.handlers = [handler]
    monkeypatch.setattr(airflow_logging, "_journal_streams", lambda: (stream,))
    yield logger, handler, stream
    logger.handlers = []


def test_airflow_console_records_become_entries_with_their_text_and_fields(sent, console):
    logger, _, stream = console
    airflow_logging.adopt_airflow_logging()
    logger.warning("password s3cret for %s", "x", extra={"dag_id": "etl", "task_id": "load"})
    logger.debug("below the level")
    entry = sent[-1]
    assert entry["MESSAGE"] == "password *** for x"  # its filters; the journal has time and level
    assert (entry["PRIORITY"], entry["DAG_ID"], entry["TASK_ID"]) == ("4", "etl", "load")
    assert entry["LOGGER"] == "afsd-test-airflow"
    assert entry["SYSLOG_IDENTIFIER"] == "airflow-scheduler"
    assert stream.getvalue() == ""
    assert len(sent) == 1


def test_a_redirected_console_writes_where_it_points(sent, console):
    logger, original, _ = console
    airflow_logging.adopt_airflow_logging()
    elsewhere = io.StringIO()
    original.stream = elsewhere  # as Airflow 2.10 does with sys.stdout in task processes
    logger.error("to the task log")
    assert elsewhere.getvalue() == "[ERROR] to the task log\n"
    assert sent == []


def test_file_handlers_are_left_alone(sent, tmp_path, monkeypatch):
    logger = logging.getLogger("afsd-test-task")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "task.log")
    logger.handlers = [handler]
    monkeypatch.setattr(airflow_logging, "_journal_streams", lambda: (sys.__stdout__,))
    airflow_logging.adopt_airflow_logging()
    assert logger.handlers == [handler]
    logger.warning("task line")
    handler.close()
    assert (tmp_path / "task.log").read_text() == "task line\n"
    assert sent == []


def test_structlog_events_become_entries_with_their_fields(sent, monkeypatch):
    import structlog

    stream = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    monkeypatch.setattr(airflow_logging, "_journal_streams", lambda: (stream,))
    try:
        structlog.get_logger("airflow.task").info("hello")  # used before: holds the same list
        airflow_logging.adopt_airflow_logging()
        structlog.get_logger("airflow.task").error(
            "Task failed", dag_id="etl", run_id="r1", try_number=2, rows=3
        )
    finally:
        structlog.reset_defaults()
    assert stream.getvalue().count("\n") == 1  # only the line from before
    entry = sent[-1]
    assert entry["MESSAGE"] == "Task failed rows=3"  # identifiers are fields, the rest stays
    assert (entry["PRIORITY"], entry["DAG_ID"], entry["RUN_ID"], entry["TRY_NUMBER"]) == (
        "3",
        "etl",
        "r1",
        "2",
    )
    assert (entry["CODE_FILE"], entry["CODE_FUNC"]) == (
        __file__,
        "test_structlog_events_become_entries_with_their_fields",
    )


def test_a_record_without_a_source_has_no_code_fields(sent):
    record = logging.LogRecord("airflow.task", logging.INFO, "", 0, "copied line", None, None, func=None)
    journal.native_handler().handle(record)
    journal.log.info("with a source")
    copied, own = sent
    assert not {"CODE_FILE", "CODE_LINE", "CODE_FUNC"} & copied.keys()
    assert (own["CODE_FILE"], own["CODE_FUNC"]) == (
        __file__,
        "test_a_record_without_a_source_has_no_code_fields",
    )


def test_the_sender_does_not_guess_a_source(monkeypatch):
    """systemd.journal.send() would fill CODE_* in from its caller: the logging machinery."""
    lines = []
    monkeypatch.setattr(journal, "sendv", lambda *args: lines.extend(args))
    journal._send("hello", MESSAGE_ID=journal.READY, PRIORITY=6, BLOB=b"\x00")
    assert lines == ["MESSAGE=hello", f"MESSAGE_ID={journal.READY}", "PRIORITY=6", b"BLOB=\x00"]


# Airflow 3 logs through structlog; Airflow 2.10 does not install it, so there is nothing to
# test there. Not collected rather than skipped: a skip fails the run under CI=true.
if importlib.util.find_spec("structlog") is None:
    del test_structlog_events_become_entries_with_their_fields


def test_own_unit_reads_the_cgroup(tmp_path):
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/airflow-scheduler.service\n")
    assert last_run.own_unit(str(cgroup)) == "airflow-scheduler.service"
    cgroup.write_text("0::/user.slice/user-0.slice/session-1.scope\n")
    assert last_run.own_unit(str(cgroup)) is None
    assert last_run.own_unit(str(tmp_path / "missing")) is None


def test_restart_after_failure_is_reported_from_the_alert_state(sent, tmp_path, monkeypatch):
    monkeypatch.setattr(last_run, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(last_run, "own_unit", lambda: "airflow-scheduler.service")
    last_run.report_restart_after_failure()  # no record: a first start
    stop = {"result": "watchdog", "exit_code": "dumped", "exit_status": "ABRT", "invocation_id": "abc"}
    (tmp_path / "runs").mkdir()  # the one part of the alert's state the service may read
    (tmp_path / "runs" / "airflow-scheduler.service.json").write_text(
        json.dumps({"last_stop": {**stop, "time": time.time()}})
    )
    last_run.report_restart_after_failure()
    (entry,) = sent
    assert entry["MESSAGE_ID"] == journal.RESTARTED_AFTER_FAILURE
    assert entry["PRIORITY"] == "4"
    assert (entry["PREVIOUS_RESULT"], entry["PREVIOUS_INVOCATION_ID"]) == ("watchdog", "abc")
    assert "signal ABRT (core dumped)" in entry["MESSAGE"]
    # A clean stop, or a record from another boot, is no failure to report.
    for record in (
        {**stop, "result": "success", "time": time.time()},
        {**stop, "time": last_run.booted_at() - 60},
    ):
        (tmp_path / "runs" / "airflow-scheduler.service.json").write_text(json.dumps({"last_stop": record}))
        last_run.report_restart_after_failure()
    assert len(sent) == 1


def test_loop_iteration_longer_than_half_the_watchdog_is_a_near_miss(sent):
    class Notifier:
        watchdog_interval = 4.0

        def send(self, *lines):
            pass

    now = [100.0]
    notifier = Notifier()
    life = Lifecycle("airflow-systemd scheduler", notifier, 10)
    loop = JobLoop(Probe(life, clock=lambda: now[0]), life.name)
    for step in (30.0, 1.0, 1.9, 2.5, 1.0):  # the first includes start-up: never a near miss
        now[0] += step
        loop.iteration_done()
    near = [e for e in sent if e.get("MESSAGE_ID") == journal.WATCHDOG_NEAR_MISS]
    assert len(near) == 1
    assert (near[0]["ITERATION_SECONDS"], near[0]["WATCHDOG_SECONDS"], near[0]["PRIORITY"]) == (
        "2.500",
        "4",
        "4",
    )


def test_the_journal_imports_no_alert_code():
    """The alert logs through the journal; the journal reads nothing of the alert's (the
    service's restart report goes through last_run.py), so the two cannot import each other.
    Imports inside functions count: the cycle this replaces was one."""
    tree = ast.parse(Path(journal.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert {m for m in imported if m.startswith("airflow_systemd")} == {"airflow_systemd.contract"}
