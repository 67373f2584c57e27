"""Logging to the journal, and the lifecycle events an operator alerts on.

Under systemd a service's stdout and stderr are a stream to journald, which makes every line an
entry with PRIORITY=6 (info) and no fields of its own. :func:`setup` sends the records of our
``airflow_systemd`` logger as native journal entries instead, through systemd-python's
:class:`~systemd.journal.JournalHandler`: PRIORITY from the record's level,
SYSLOG_IDENTIFIER=airflow-COMPONENT (what the unit's SyslogIdentifier= gives its stream lines),
AIRFLOW_COMPONENT=COMPONENT, and a MESSAGE_ID for each lifecycle :func:`event` (the constants
below; ``airflow-systemd.catalog`` is what `journalctl -x` explains them with).

Airflow's own console logging is sent the same way by
:mod:`airflow_systemd.airflow.logging`, with what this module exposes for it.

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
    from systemd.journal import JournalHandler, sendv
except ImportError:  # pragma: no cover - depends on the installation
    JournalHandler = sendv = None

from airflow_systemd.contract import (  # noqa: F401 - the event ids, where callers look for them
    CATALOG,
    CONFIG_ERROR,
    CRASHED,
    DB_UNREACHABLE,
    EVENTS,
    HEARTBEAT_FAILED,
    READY,
    RESTARTED_AFTER_FAILURE,
    STOPPING,
    WATCHDOG_NEAR_MISS,
)

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
        _mode, handler = "native", native_handler()
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


def mode() -> str | None:
    """How :func:`setup` writes to the journal: "native", "prefix" (``<N>`` lines) or None."""
    return _mode


def owns(handler: logging.Handler) -> bool:
    """True for a handler :func:`setup` installed (Airflow's logging takeover leaves it alone)."""
    return handler in _installed


def event(message_id: str, message: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log a lifecycle event: ``message`` with MESSAGE_ID and ``fields`` (UPPER_CASE names)."""
    extra = {name: value for name, value in fields.items() if value is not None}
    log.log(level, message, extra={"MESSAGE_ID": message_id, **extra})


def prefixed(levelno: int, text: str) -> str:
    """``text`` as ``<N>`` lines: journald reads the prefix per line, so every line of a
    traceback keeps the priority."""
    p = priority(levelno)
    return "\n".join(f"<{p}>{line}" for line in (text.splitlines() or [""]))


class _PrefixHandler(logging.StreamHandler):
    """Lines with sd-daemon(3) ``<N>`` prefixes, which journald turns into PRIORITY=."""

    def format(self, record: logging.LogRecord) -> str:
        return prefixed(record.levelno, super().format(record))


def native_handler() -> logging.Handler:
    """A native journal handler with this process's identity (see :func:`setup`)."""
    return _NativeHandler(**_identity)


def _without_unknown_source(fields: dict) -> dict:
    """``fields`` minus CODE_FILE, CODE_LINE and CODE_FUNC where the record has no source
    (empty, 0 or None): an entry says where it comes from, or nothing."""
    return {
        name: value
        for name, value in fields.items()
        if not (name.startswith("CODE_") and (value is None or value == "" or value == 0))
    }


def _send(MESSAGE: str, **fields: object) -> None:
    """:func:`systemd.journal.send` without its guess: send() fills CODE_* in from its own
    caller's frame when an entry has none, which for a record without a source is the logging
    machinery, not the code that logged."""
    lines = ["MESSAGE=" + MESSAGE]
    for name, value in fields.items():
        if name == "MESSAGE_ID":
            value = getattr(value, "hex", value)
        lines.append(name.encode() + b"=" + value if isinstance(value, bytes) else f"{name}={value}")
    sendv(*lines)


if JournalHandler is not None:

    class _NativeHandler(JournalHandler):
        """systemd-python's handler, with CODE_* only where the record has a source; a record
        it cannot send goes to stderr as a ``<N>`` line."""

        def __init__(self, level: int = logging.NOTSET, sender_function=_send, **fields: str):
            super().__init__(
                level,
                sender_function=lambda MESSAGE, **f: sender_function(MESSAGE, **_without_unknown_source(f)),
                **fields,
            )

        def handleError(self, record: logging.LogRecord) -> None:
            with contextlib.suppress(Exception):
                sys.__stderr__.write(prefixed(record.levelno, self.format(record)) + "\n")
                sys.__stderr__.flush()
