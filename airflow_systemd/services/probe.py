"""The one probe: turns a component's proofs of progress into READY=1, WATCHDOG=1 and STATUS=.

Every kind of component reports here; only what counts as proof differs:

* a job loop (scheduler, dag-processor, triggerer) reports from inside the loop, on the main
  thread, never from a side thread: if the loop hangs (frozen database, deadlock, a lock it
  waits on), the pings stop and systemd's watchdog acts. Its proof is a *successful* job
  heartbeat, a committed database write: Airflow's Job.heartbeat logs and swallows
  OperationalError, so a loop can keep turning on a database that no longer takes writes;
* an HTTP server (api-server, webserver) runs a loop that belongs to uvicorn or gunicorn, in
  code we do not hook: a thread requests its health endpoint, and the proof is an answer.

The rules, the same for both: READY=1 on the first successful round; WATCHDOG=1 only while the
last proof is younger than the watchdog interval, and at most once per half interval (what
sd_watchdog_enabled(3) recommends; more often only costs syscalls); STATUS= at most every
STATUS_EVERY seconds, riding along with a ping when one is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from airflow_systemd.contract import ConfigError
from airflow_systemd.lifecycle import Lifecycle

STATUS_EVERY = 2.0  # seconds; STATUS= is for humans, no need to send it every round


def require_watchdog_margin(interval: float | None, heartbeat_seconds: float, setting: str) -> None:
    """Refuse a WatchdogSec= the job heartbeat cannot keep up with.

    Pings need a heartbeat younger than the interval; heartbeats come every
    ``heartbeat_seconds`` plus one loop iteration. Twice the heartbeat leaves an iteration's
    worth of margin; less would get a healthy process killed.
    """
    minimum = 2 * heartbeat_seconds
    if interval is not None and interval < minimum:
        raise ConfigError(
            f"WatchdogSec={interval:g}s is too short for {setting}={heartbeat_seconds:g}: "
            f"set WatchdogSec= to at least {minimum:g}s, or lower {setting}"
        )


class Probe:
    """READY / WATCHDOG / STATUS decisions for one component, on the monotonic clock."""

    def __init__(self, life: Lifecycle, clock: Callable[[], float] = time.monotonic) -> None:
        self._life = life
        self._clock = clock
        self.ready = False
        self.last_progress: float | None = None
        self._last_ping = float("-inf")
        self._last_status = float("-inf")

    @property
    def interval(self) -> float | None:
        """WatchdogSec= in seconds, None without a watchdog: the notifier's, never a copy."""
        return self._life.notifier.watchdog_interval

    def now(self) -> float:
        return self._clock()

    def progressed(self, now: float | None = None) -> None:
        """The component proved that it works (a committed heartbeat, a health answer)."""
        self.last_progress = self._clock() if now is None else now

    def round_done(self, status: Callable[[], str], now: float | None = None) -> None:
        """A successful round (a loop iteration, a health answer) ended: notify what is due."""
        now = self._clock() if now is None else now
        if not self.ready:
            self.ready = True
            self.last_progress = self.last_progress or now
            self._life.ready(status())
            self._last_status = now
        lines = []
        if now - self._last_status >= STATUS_EVERY:
            lines.append(f"STATUS={status()}")
            self._last_status = now
        if self._progress_fresh(now) and self._ping_due(now):
            self._last_ping = now
            self._life.notifier.send("WATCHDOG=1", *lines)
        elif lines:
            self._life.notifier.send(*lines)

    def failing(self, text: str) -> None:
        """A round failed: say why in STATUS= (before READY the start-up step stays shown)."""
        if self.ready:
            self._life.notifier.status(text)

    def _progress_fresh(self, now: float) -> bool:
        return self.last_progress is not None and now - self.last_progress < (self.interval or 0)

    def _ping_due(self, now: float) -> bool:
        return self.interval is not None and now - self._last_ping >= self.interval / 2
