"""Airflow's own console logging, sent to the journal the way our own records go.

:func:`adopt_airflow_logging` sends Airflow's console logging where
:func:`airflow_systemd.journal.setup` sends ours, keeping its filters and processors (secrets
masking) but not its layout: journald keeps the time and PRIORITY, so MESSAGE is the event
text alone (:func:`message_text`), the logger is LOGGER, the code that logged is
CODE_FILE/CODE_LINE/CODE_FUNC (absent when unknown), and DAG_ID, RUN_ID, TASK_ID,
TRY_NUMBER, MAP_INDEX and TI_ID are fields when a record carries them. In Airflow 3 they often
do: a task binds them to its structlog context, and the LocalExecutor copies every task log
line to the scheduler's console. Airflow 2.10's triggerer attaches the task instance to its
records. Task logs still go to their files (the UI reads them there): only what went to the
journal before goes to the journal now, and whatever Airflow redirects (2.10's task and
DAG-file processes point sys.stdout at a log file) keeps going where Airflow points it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import threading
import traceback
from collections.abc import Mapping

from airflow_systemd import journal

# What Airflow calls them (record attributes, structlog keys) -> journal field.
AIRFLOW_FIELDS = {
    "dag_id": "DAG_ID",
    "run_id": "RUN_ID",
    "task_id": "TASK_ID",
    "try_number": "TRY_NUMBER",
    "map_index": "MAP_INDEX",
    "ti_id": "TI_ID",
}
# The attribute of a task instance object that holds an identifier, where its name differs.
_INSTANCE_ATTRIBUTES = {"ti_id": "id"}

# Keys of an event dict the journal keeps elsewhere: its own timestamp, PRIORITY, LOGGER,
# CODE_*; and structlog's bookkeeping. Left out of MESSAGE.
_NOT_IN_TEXT = frozenset(
    {
        "event",
        "timestamp",
        "level",
        "logger",
        "logger_name",
        "loc",
        "pathname",
        "filename",
        "lineno",
        "func_name",
        "module",
        "thread",
        "thread_name",
        "process",
        "process_name",
        "positional_args",
        "exc_info",
        "exception",
        "stack",
        "_record",
        "_from_structlog",
    }
)


def airflow_fields(source: Mapping[str, object]) -> dict[str, str]:
    """DAG_ID, RUN_ID, TASK_ID, TRY_NUMBER, MAP_INDEX, TI_ID from a record's attributes or
    event dict.

    Airflow 3 binds the keys themselves (task runner, triggerer); Airflow 2.10's triggerer
    attaches the task instance (``task_instance``), as Airflow code also passes ``ti``.
    """
    fields = {}
    instance = source.get("task_instance") or source.get("ti")
    for key, field in AIRFLOW_FIELDS.items():
        value = source.get(key)
        if value is None and instance is not None:
            with contextlib.suppress(Exception):  # a detached ORM object may refuse
                value = getattr(instance, _INSTANCE_ATTRIBUTES.get(key, key), None)
        if value is None or value == "" or (key == "map_index" and str(value) == "-1"):
            continue
        fields[field] = str(value)
    return fields


def message_text(event: Mapping[str, object], *, identifiers: bool = False) -> str:
    """The MESSAGE of a structlog event dict: the event, then its other key/values as
    ``key=value`` (nothing is lost), then the exception or stack.

    Left out: what the journal keeps in its own fields (time, level, logger, source), and the
    identifiers of :data:`AIRFLOW_FIELDS` unless ``identifiers`` (``<N>`` lines have no fields
    to carry them).
    """
    skip = _NOT_IN_TEXT if identifiers else _NOT_IN_TEXT | AIRFLOW_FIELDS.keys()
    parts = [str(event.get("event", ""))]
    parts += [f"{key}={_value(value)}" for key, value in event.items() if key not in skip]
    text = " ".join(part for part in parts if part)
    for tail in (_exception(event.get("exc_info")) or event.get("exception"), event.get("stack")):
        if tail:
            text += "\n" + str(tail).rstrip("\n")
    return text


def _value(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text) if not text or any(c.isspace() for c in text) else text


def _exception(exc_info: object) -> str | None:
    if not exc_info:
        return None
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif not isinstance(exc_info, tuple):
        exc_info = sys.exc_info()
    if exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info))


def _source(event: Mapping[str, object]) -> tuple[str | None, int | None, str | None]:
    """CODE_FILE, CODE_LINE, CODE_FUNC from structlog's callsite keys (None: unknown).

    A task's lines the LocalExecutor copies to the scheduler carry only the file name and
    line the task process saw (``loc``, Airflow's "file.py:12")."""
    path = event.get("pathname") or event.get("filename")
    line = event.get("lineno")
    if not path and isinstance(event.get("loc"), str):
        path, _, number = event["loc"].rpartition(":")
        line = int(number) if number.isdigit() else None
    return (
        (str(path) if path else None),
        (line if isinstance(line, int) else None),
        (str(event["func_name"]) if event.get("func_name") else None),
    )


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
        self.clean = _Clean(identifiers=target is None)
        self.structlog = None  # Airflow 3: its ProcessorFormatter, with _Clean as the renderer
        formatter = original.formatter
        if hasattr(formatter, "foreign_pre_chain") and getattr(formatter, "processors", None):
            self.structlog = copy.copy(formatter)
            self.structlog.processors = [*formatter.processors[:-1], self.clean]

    def handle(self, record: logging.LogRecord):
        if getattr(self.original, "stream", None) not in self.streams:
            return self.original.handle(record)
        result = self.original.filter(record)  # secrets masking and the like
        if not result:
            return result
        if isinstance(result, logging.LogRecord):
            record = result
        text, event = self._text(record)
        if self.target is None:
            with self.original.lock or contextlib.nullcontext():
                self.original.stream.write(journal.prefixed(record.levelno, text) + self.original.terminator)
                self.original.flush()
            return result
        entry = logging.makeLogRecord(record.__dict__)
        entry.msg, entry.args, entry.exc_info, entry.exc_text, entry.stack_info = text, None, None, None, None
        for name, value in airflow_fields(event).items():
            entry.__dict__.setdefault(name, value)
        self.target.handle(entry)
        return result

    def _text(self, record: logging.LogRecord) -> tuple[str, Mapping[str, object]]:
        """The record's event text and the event dict it came with (empty for a plain formatter).

        Airflow 3 formats stdlib records with structlog's ProcessorFormatter: its processors run
        (contextvars, masking...) and :class:`_Clean` replaces its renderer. A plain formatter
        (Airflow 2) gives the message, with its exception and stack."""
        if self.structlog is not None:
            text = self.structlog.format(record)
            return text, self.clean.local.event
        formatter = self.original.formatter or logging.Formatter()
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + formatter.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + formatter.formatStack(record.stack_info)
        return text, {}

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
        # Where the event was logged: Airflow's own callsite keys, if any, are file name and line.
        # A CallsiteParameterAdder, so that loggers Airflow rebuilds without one (the
        # supervisor's copies of task lines, which carry the task's own) drop it too.
        params = structlog.processors.CallsiteParameter
        processors.insert(
            len(processors) - 1,
            structlog.processors.CallsiteParameterAdder(
                [params.PATHNAME, params.LINENO, params.FUNC_NAME],
                additional_ignores=["airflow._shared.logging", "airflow.sdk._shared.logging"],
            ),
        )
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


class _Clean:
    """A structlog renderer: :func:`message_text`; keeps the event dict for the caller
    (per thread: the formatter it sits in is shared)."""

    def __init__(self, *, identifiers: bool):
        self.identifiers = identifiers
        self.local = threading.local()

    def __call__(self, logger, method_name: str, event_dict: dict) -> str:
        self.local.event = event_dict
        return message_text(event_dict, identifiers=self.identifiers)


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
        levelno = _LEVELS.get(str(event_dict.get("level", method_name)).lower(), logging.INFO)
        text = message_text(event_dict, identifiers=self.target is None)
        if self.target is None:
            return journal.prefixed(levelno, text)
        name = str(event_dict.get("logger") or getattr(logger, "name", None) or "airflow")
        pathname, lineno, func = _source(event_dict)
        record = logging.LogRecord(name, levelno, pathname or "", lineno or 0, text, None, None, func=func)
        record.__dict__.update(airflow_fields(event_dict))
        self.target.handle(record)
        raise self.drop
