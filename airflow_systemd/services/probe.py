"""Turns a job loop's progress into READY=1, WATCHDOG=1 and STATUS=.

Everything here is called from inside the loop, on the main thread, never from a side
thread: if the loop hangs (frozen database, deadlock, a lock it waits on), the pings stop and
systemd's watchdog acts. A ping also needs a recent *successful* job heartbeat, a committed
database write: Airflow's Job.heartbeat logs and swallows OperationalError, so a loop can keep
turning on a database that no longer takes writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from airflow_systemd import journal
from airflow_systemd.lifecycle import ConfigError, Lifecycle
from airflow_systemd.notify import Watchdog

STATUS_EVERY = 2.0  # seconds; STATUS= is for humans, no need to send it every iteration


def require_watchdog_margin(watchdog: Watchdog, heartbeat_seconds: float, setting: str) -> None:
    """Refuse a WatchdogSec= the job heartbeat cannot keep up with.

    Pings need a heartbeat younger than the interval; heartbeats come every
    ``heartbeat_seconds`` plus one loop iteration. Twice the heartbeat leaves an iteration's
    worth of margin; less would get a healthy process killed.
    """
    minimum = 2 * heartbeat_seconds
    if watchdog.interval is not None and watchdog.interval < minimum:
        raise ConfigError(
            f"WatchdogSec={watchdog.interval:g}s is too short for {setting}={heartbeat_seconds:g}: "
            f"set WatchdogSec= to at least {minimum:g}s, or lower {setting}"
        )


class LoopProbe:
    def __init__(
        self,
        life: Lifecycle,
        watchdog: Watchdog,
        activity: Callable[[], str] = lambda: "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._life = life
        self._watchdog = watchdog
        self._activity = activity
        self._clock = clock
        self.iterations = 0
        self.last_heartbeat: float | None = None
        self._last_status = float("-inf")
        self._last_iteration: float | None = None

    def heartbeat_committed(self) -> None:
        self.last_heartbeat = self._clock()

    def iteration_done(self) -> None:
        now = self._clock()
        self.iterations += 1
        self._check_iteration_time(now)
        if self.iterations == 1:
            # The first iteration ran its queries and commits: the database works.
            self.last_heartbeat = self.last_heartbeat or now
            self._life.ready(self._status(now))
            self._last_status = now
        lines = []
        if now - self._last_status >= STATUS_EVERY:
            lines.append(f"STATUS={self._status(now)}")
            self._last_status = now
        heartbeat_fresh = now - self.last_heartbeat < (self._watchdog.interval or 0)
        if heartbeat_fresh and self._watchdog.due(now):
            self._watchdog.ping(now, *lines)
        elif lines:
            self._life.notifier.send(*lines)

    def _check_iteration_time(self, now: float) -> None:
        # The loop feeds the watchdog once per iteration: one that takes more than half of
        # WatchdogSec= is a warning before the kill. The first one includes start-up: not counted.
        previous, self._last_iteration = self._last_iteration, now
        interval = self._watchdog.interval
        if previous is None or interval is None or now - previous <= interval / 2:
            return
        journal.event(
            journal.WATCHDOG_NEAR_MISS,
            f"a loop iteration took {now - previous:.1f}s, more than half of WatchdogSec={interval:g}s: "
            f"at {interval:g}s the watchdog kills {self._life.name}",
            level=logging.WARNING,
            ITERATION_SECONDS=f"{now - previous:.3f}",
            WATCHDOG_SECONDS=f"{interval:g}",
        )

    def _status(self, now: float) -> str:
        age = now - (self.last_heartbeat or now)
        activity = self._activity()
        return f"running: loop {self.iterations}, heartbeat {age:.0f}s ago" + (
            f", {activity}" if activity else ""
        )
