"""Messages to the service manager: sd_notify(3), and sd_watchdog_enabled(3) timing.

sdnotify does the socket part well (abstract ``@`` addresses, a silent no-op outside systemd,
send errors swallowed so a vanished socket never crashes the scheduler). Two pieces are missing
and added here:

* sdnotify ignores ``WATCHDOG_USEC`` and ``WATCHDOG_PID``: :func:`watchdog_interval` reads them
  with sd_watchdog_enabled(3) semantics (``services/probe.py`` paces the pings).
* sdnotify leaves ``NOTIFY_SOCKET`` in the environment. Every child would inherit it (Airflow
  2.10's serve-logs gunicorn then sends its own READY=1, task code could ping the watchdog):
  :class:`Notifier` connects first, then removes the variables. Note that
  ``/proc/PID/environ`` of a *forked* child keeps showing the exec-time environment; what the
  child's ``os.environ`` and anything it execs see is the scrubbed one.

https://www.freedesktop.org/software/systemd/man/sd_notify.html
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

import sdnotify

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """The watchdog interval in seconds if it is meant for ``pid``, else None.

    Like sd_watchdog_enabled(3): WATCHDOG_PID, when set, must name this process, because the
    variables may have leaked to a child that is not the service's main process.
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    return usec / 1_000_000


class Notifier:
    """Sends ``KEY=value`` lines to systemd, only from the process that created it."""

    def __init__(self) -> None:
        # sdnotify reads NOTIFY_SOCKET from os.environ itself, so this works on the real one.
        self._pid = os.getpid()
        self._sd = sdnotify.SystemdNotifier() if os.environ.get("NOTIFY_SOCKET") else None
        self.watchdog_interval = watchdog_interval(os.environ, self._pid) if self._sd else None
        for name in NOTIFY_VARIABLES:
            os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        return self._sd is not None

    def send(self, *lines: str) -> None:
        # Forked children share this object (and its socket); NotifyAccess=main would reject
        # their messages anyway, so they never send.
        if self._sd is not None and os.getpid() == self._pid:
            self._sd.notify("\n".join(lines))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def grant_watchdog(self, seconds: float) -> None:
        """Re-arm a configured watchdog with at least ``seconds`` from now (WATCHDOG_USEC=,
        systemd >= 236). For a bounded piece of work that is not the loop, such as the
        clean-up after a crash; without a watchdog it sends nothing, so none is enabled."""
        if self.watchdog_interval is not None:
            usec = int(max(seconds, self.watchdog_interval) * 1_000_000)
            self.send("WATCHDOG=1", f"WATCHDOG_USEC={usec}")
