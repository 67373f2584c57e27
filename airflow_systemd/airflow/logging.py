"""Airflow's own console logging, sent to the journal the way our own records go.

:func:`adopt_airflow_logging` sends Airflow's console logging where
:func:`airflow_systemd.journal.setup` sends ours, keeping its text and its filters (secrets
masking): records get their PRIORITY, and DAG_ID, RUN_ID, TASK_ID, TRY_NUMBER (and
MAP_INDEX) fields when they carry those. In Airflow 3 they often do: a task
binds them to its structlog context, and the LocalExecutor copies every task log line to the
scheduler's console. Airflow 2.10's triggerer attaches the task instance to its records. Task
logs still go to their files (the UI reads them there): only what went to the journal before
goes to the journal now, and whatever Airflow redirects (2.10's task and DAG-file processes
point sys.stdout at a log file) keeps going where Airflow points it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping

from airflow_systemd import journal

# What Airflow calls them (record attributes, structlog keys) -> journal field.
AIRFLOW_FIELDS = {
    "dag_id": "DAG_ID",
    "run_id": "RUN_ID",
    "task_id": "TASK_ID",
    "try_number": "TRY_NUMBER",
    "map_index": "MAP_INDEX",
}


def airflow_fields(source: Mapping[str, object]) -> dict[str, str]:
    """DAG_ID, RUN_ID, TASK_ID, TRY_NUMBER, MAP_INDEX from a record's attributes or event dict.

    Airflow 3 binds the keys themselves (task runner, triggerer); Airflow 2.10's triggerer
    attaches the task instance (``task_instance``), as Airflow code also passes ``ti``.
    """
    fields = {}
    instance = source.get("task_instance") or source.get("ti")
    for key, field in AIRFLOW_FIELDS.items():
        value = source.get(key)
        if value is None and instance is not None:
            with contextlib.suppress(Exception):  # a detached ORM object may refuse
                value = getattr(instance, key, None)
        if value is None or value == "" or (key == "map_index" and str(value) == "-1"):
            continue
        fields[field] = str(value)
    return fields


def adopt_airflow_logging() -> None:
    """Send Airflow's console logging to the journal the way :func:`journal.setup` chose for ours.

    Call it once Airflow has configured its logging (``import airflow`` does). Each stream
    handler that writes to the journal stream is replaced by a stand-in that uses its filters
    and its formatter; structlog's renderer (Airflow 3) is wrapped the same way. Task log
    handlers write to files and are left alone.
    """
    if not journal.active():
        return
    streams = _journal_streams()
    if not streams:
        return
    target = _airflow_handler() if journal.mode() == "native" else None
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        handlers = getattr(logger, "handlers", None) or []
        for i, handler in enumerate(handlers):
            if (
                isinstance(handler, logging.StreamHandler)
                and not journal.owns(handler)
                and getattr(handler, "stream", None) in streams
            ):
                handlers[i] = _Console(handler, streams, target)
    _adopt_structlog(streams, target)


def _journal_streams() -> tuple:
    candidates = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    streams = []
    for stream in candidates:
        with contextlib.suppress(Exception):
            if stream is not None and stream not in streams and journal.is_journal_stream(stream.fileno()):
                streams.append(stream)
    return tuple(streams)


class _AirflowFieldsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in airflow_fields(record.__dict__).items():
            record.__dict__.setdefault(name, value)
        return True


def _airflow_handler() -> logging.Handler:
    handler = journal.native_handler()
    handler.addFilter(_AirflowFieldsFilter())
    return handler


class _Console(logging.Handler):
    """Stands in for one of Airflow's console handlers: its filters and its text, to the journal.

    While the stream that handler points at is not the journal (Airflow redirected sys.stdout),
    the original handler does the work, as before.
    """

    def __init__(self, original: logging.StreamHandler, streams: tuple, target: logging.Handler | None):
        super().__init__(original.level)
        self.original = original
        self.streams = streams
        self.target = target  # None: write <N> lines to the original's stream

    def handle(self, record: logging.LogRecord):
        if getattr(self.original, "stream", None) not in self.streams:
            return self.original.handle(record)
        result = self.original.filter(record)  # secrets masking and the like
        if not result:
            return result
        if isinstance(result, logging.LogRecord):
            record = result
        text = self.original.format(record)
        if self.target is None:
            with self.original.lock or contextlib.nullcontext():
                self.original.stream.write(journal.prefixed(record.levelno, text) + self.original.terminator)
                self.original.flush()
            return result
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg, copy.args, copy.exc_info, copy.exc_text, copy.stack_info = text, None, None, None, None
        self.target.handle(copy)
        return result

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        self.handle(record)

    def flush(self) -> None:
        self.original.flush()


def _adopt_structlog(streams: tuple, target: logging.Handler | None) -> None:
    try:
        import structlog
    except ImportError:  # Airflow 2.10 does not use it
        return
    processors = structlog.get_config()["processors"]
    # In place: loggers that were already used hold this very list.
    if processors and not isinstance(processors[-1], _StructlogRenderer):
        processors[-1] = _StructlogRenderer(processors[-1], streams, target, structlog.DropEvent)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class _StructlogRenderer:
    """Wraps structlog's last processor (the renderer) for loggers that write to the journal."""

    def __init__(self, renderer, streams: tuple, target: logging.Handler | None, drop: type[Exception]):
        self.renderer = renderer
        self.streams = streams
        self.target = target
        self.drop = drop

    def __call__(self, logger, method_name: str, event_dict: dict):
        if getattr(logger, "_file", None) not in self.streams:
            return self.renderer(logger, method_name, event_dict)
        # Read what the record needs before the renderer pops it.
        levelno = _LEVELS.get(str(event_dict.get("level", method_name)).lower(), logging.INFO)
        name = str(event_dict.get("logger") or getattr(logger, "name", None) or "airflow")
        fields = airflow_fields(event_dict)
        pathname = str(event_dict.get("pathname") or event_dict.get("filename") or "")
        lineno = event_dict.get("lineno")
        func = event_dict.get("func_name")
        text = self.renderer(logger, method_name, event_dict)
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        if self.target is None:
            return journal.prefixed(levelno, text)
        record = logging.LogRecord(
            name, levelno, pathname, lineno if isinstance(lineno, int) else 0, text, None, None, func=func
        )
        record.__dict__.update(fields)
        self.target.handle(record)
        raise self.drop
