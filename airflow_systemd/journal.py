"""Logging to the journal, and the lifecycle events an operator alerts on.

Under systemd a service's stdout and stderr are a stream to journald, which makes every line an
entry with PRIORITY=6 (info) and no fields of its own. :func:`setup` sends the records of our
``airflow_systemd`` logger as native journal entries instead, through systemd-python's
:class:`~systemd.journal.JournalHandler`: PRIORITY from the record's level,
SYSLOG_IDENTIFIER=airflow-COMPONENT (what the unit's SyslogIdentifier= gives its stream lines),
AIRFLOW_COMPONENT=COMPONENT, and a MESSAGE_ID for each lifecycle :func:`event` (the constants
below; ``airflow-systemd.catalog`` is what `journalctl -x` explains them with).

:func:`adopt_airflow_logging` does the same for Airflow's own console logging, keeping its text
and its filters (secrets masking): records get their PRIORITY, and DAG_ID, RUN_ID, TASK_ID,
TRY_NUMBER (and MAP_INDEX) fields when they carry those. In Airflow 3 they often do: a task
binds them to its structlog context, and the LocalExecutor copies every task log line to the
scheduler's console. Airflow 2.10's triggerer attaches the task instance to its records. Task
logs still go to their files (the UI reads them there): only what went to the journal before
goes to the journal now, and whatever Airflow redirects (2.10's task and DAG-file processes
point sys.stdout at a log file) keeps going where Airflow points it.

Which stream is the journal: JOURNAL_STREAM (systemd.exec(5)) holds the device and inode of
the stream systemd connected, compared with what fstat() says about fd 1 and 2, so a child
whose output was redirected does not take itself for a journal writer.

Without systemd-python (a pip install without the ``journal`` extra), lines on a journal
stream get sd-daemon(3)'s ``<N>`` prefix, which journald turns into PRIORITY=; no MESSAGE_ID
or other field can travel that way. Outside the journal (a terminal, a pipe, a test) the
output is what it always was.

Native entries carry no unit of their own: journald looks the sender's unit up in /proc when
an entry arrives, and keeps what it found for later entries of the same process. A process
that logs natively from its start (``life.step``) has its unit known even for the entry it
sends just before it exits; a short-lived command, like the alert, writes to its stream
instead (``native=False``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping

try:
    from systemd.journal import JournalHandler
except ImportError:  # pragma: no cover - depends on the installation
    JournalHandler = None

from airflow_systemd.contract import (  # noqa: F401 - the event ids, where callers look for them
    CATALOG,
    CONFIG_ERROR,
    CRASHED,
    DB_UNREACHABLE,
    EVENTS,
    READY,
    RESTARTED_AFTER_FAILURE,
    STOPPING,
    WATCHDOG_NEAR_MISS,
)

# What Airflow calls them (record attributes, structlog keys) -> journal field.
AIRFLOW_FIELDS = {
    "dag_id": "DAG_ID",
    "run_id": "RUN_ID",
    "task_id": "TASK_ID",
    "try_number": "TRY_NUMBER",
    "map_index": "MAP_INDEX",
}

log = logging.getLogger("airflow_systemd")

_mode: str | None = None  # "native", "prefix" (<N> lines) or None (not the journal)
_identity: dict[str, str] = {}
_installed: list[logging.Handler] = []


def priority(levelno: int) -> int:
    """The syslog priority of a logging level, as systemd-python's JournalHandler maps it."""
    for limit, value in ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3)):
        if levelno <= limit:
            return value
    return 2 if levelno <= logging.CRITICAL else 1


def is_journal_stream(fd: int, environ: Mapping[str, str] = os.environ) -> bool:
    """True if ``fd`` is the stream systemd connected to the journal (JOURNAL_STREAM)."""
    try:
        device, inode = (int(part) for part in environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup(component: str, *, native: bool = True) -> None:
    """Route the ``airflow_systemd`` logger for ``component`` (e.g. "scheduler").

    Native journal entries when the process runs under the journal and systemd-python is
    there (and ``native``); ``<N>`` lines when only stderr is the journal; otherwise plain
    "LEVEL airflow-systemd: message" lines on stderr.
    """
    global _mode
    for handler in _installed:
        log.removeHandler(handler)
    _installed.clear()
    _identity.clear()
    _identity.update(SYSLOG_IDENTIFIER=f"airflow-{component}", AIRFLOW_COMPONENT=component)
    under_journal = is_journal_stream(1) or is_journal_stream(2)
    if native and JournalHandler is not None and under_journal:
        _mode, handler = "native", _native_handler()
    elif is_journal_stream(2):
        _mode, handler = "prefix", _PrefixHandler(sys.__stderr__)
    else:
        _mode, handler = None, logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("%(levelname)s airflow-systemd: %(message)s"))
    _installed.append(handler)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # Airflow's logging config must not duplicate or swallow ours


def active() -> bool:
    """True if :func:`setup` found the journal: our records go there (natively or as ``<N>`` lines)."""
    return _mode is not None


def event(message_id: str, message: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log a lifecycle event: ``message`` with MESSAGE_ID and ``fields`` (UPPER_CASE names)."""
    extra = {name: value for name, value in fields.items() if value is not None}
    log.log(level, message, extra={"MESSAGE_ID": message_id, **extra})


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


# --- Airflow's own logging -----------------------------------------------------------------


def adopt_airflow_logging() -> None:
    """Send Airflow's console logging to the journal the way :func:`setup` chose for ours.

    Call it once Airflow has configured its logging (``import airflow`` does). Each stream
    handler that writes to the journal stream is replaced by a stand-in that uses its filters
    and its formatter; structlog's renderer (Airflow 3) is wrapped the same way. Task log
    handlers write to files and are left alone.
    """
    if _mode is None:
        return
    streams = _journal_streams()
    if not streams:
        return
    target = _airflow_handler() if _mode == "native" else None
    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        handlers = getattr(logger, "handlers", None) or []
        for i, handler in enumerate(handlers):
            if (
                isinstance(handler, logging.StreamHandler)
                and handler not in _installed
                and getattr(handler, "stream", None) in streams
            ):
                handlers[i] = _Console(handler, streams, target)
    _adopt_structlog(streams, target)


def _journal_streams() -> tuple:
    candidates = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    streams = []
    for stream in candidates:
        with contextlib.suppress(Exception):
            if stream is not None and stream not in streams and is_journal_stream(stream.fileno()):
                streams.append(stream)
    return tuple(streams)


def _prefixed(levelno: int, text: str) -> str:
    # journald reads the prefix per line: every line of a traceback keeps the priority
    p = priority(levelno)
    return "\n".join(f"<{p}>{line}" for line in (text.splitlines() or [""]))


class _PrefixHandler(logging.StreamHandler):
    """Lines with sd-daemon(3) ``<N>`` prefixes, which journald turns into PRIORITY=."""

    def format(self, record: logging.LogRecord) -> str:
        return _prefixed(record.levelno, super().format(record))


class _AirflowFieldsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in airflow_fields(record.__dict__).items():
            record.__dict__.setdefault(name, value)
        return True


def _native_handler() -> logging.Handler:
    return _NativeHandler(**_identity)


def _airflow_handler() -> logging.Handler:
    handler = _native_handler()
    handler.addFilter(_AirflowFieldsFilter())
    return handler


if JournalHandler is not None:

    class _NativeHandler(JournalHandler):
        """systemd-python's handler; a record it cannot send goes to stderr as a ``<N>`` line."""

        def handleError(self, record: logging.LogRecord) -> None:
            with contextlib.suppress(Exception):
                sys.__stderr__.write(_prefixed(record.levelno, self.format(record)) + "\n")
                sys.__stderr__.flush()


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
                self.original.stream.write(_prefixed(record.levelno, text) + self.original.terminator)
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
            return _prefixed(levelno, text)
        record = logging.LogRecord(
            name, levelno, pathname, lineno if isinstance(lineno, int) else 0, text, None, None, func=func
        )
        record.__dict__.update(fields)
        self.target.handle(record)
        raise self.drop
