"""Airflow's HTTP servers: the API server (3.x) and the webserver (2.10).

Their main loop belongs to uvicorn or gunicorn, in code we do not hook. What proves that such
a service works is that it answers: a thread of the main process requests the health endpoint
and reports each answer to the :class:`~.probe.Probe`, which sends READY=1 on the first and
WATCHDOG=1 only after one. A server that hangs (a frozen database under the health check, dead
workers, a wedged event loop) stops answering, and so stops the pings.

How often: every STARTING_EVERY seconds until the first answer (READY=1 comes promptly), then
every quarter watchdog interval. The pings go out at most every half interval anyway
(sd_watchdog_enabled(3)), so more requests only cost the server CPU: with the shipped
WatchdogSec=30s, a request every 7.5 s (480 an hour) instead of every second (3600), which the
benchmark measured at 10 times the Helm chart's httpGet probe (360 an hour). The watchdog
still acts 22.5 to 30 s after the last answer (16 to 30 s with a request every second).

Warm-up: some of a server is built on its first request, in its event loop. The API server's
execution API (the one tasks talk to) generates its versioned routes then, CPU-bound: on a
loaded 2-core machine that held the event loop past WatchdogSec=30s, so the health endpoint
went unanswered and systemd killed a healthy server (CI, 2026-12-02; its first request was a
scheduler's reachability check). So before READY=1, once the health endpoint answers, each
WARM_PATHS URL is requested once, as a start-up step (its own STATUS= and start timeout) rather
than under the watchdog, which systemd arms only at READY=1. Any HTTP answer counts (a 404 is
an API server run without that app). With ``[api] workers`` above 1 each worker builds its own
on its first request; only one is warmed.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from airflow_systemd.airflow import startup, support
from airflow_systemd.lifecycle import Lifecycle, log
from airflow_systemd.services.probe import Probe

STARTING_EVERY = 1.0  # seconds between requests until the first answer; less with a short watchdog
# Seconds a warm-up request may take (its step has STEP_TIMEOUT, 90 s, from systemd).
WARM_TIMEOUT = 60.0


@dataclass(frozen=True)
class HttpService:
    command: str
    title: str
    health_path: str
    host_arg: str  # the attribute of the parsed arguments that holds the listen address
    warm_paths: tuple[str, ...] = ()  # requested once before READY=1 (see the module's docstring)


def run(life: Lifecycle, service: HttpService, airflow_args: list[str]) -> None:
    parsed = startup.prepare(life, service.command, airflow_args)
    host = getattr(parsed, service.host_arg)
    url = health_url(host, parsed.port, service.health_path)
    warm = [health_url(host, parsed.port, path) for path in service.warm_paths]
    prober = HealthCheck(Probe(life), life, url, service.title, warm)
    threading.Thread(target=prober.run, name="health-prober", daemon=True).start()
    life.step(f"starting the {service.title}")
    support.run_airflow_command(service.command, airflow_args)


def health_url(host: str, port: int, path: str) -> str:
    # A wildcard listen address is reachable on loopback.
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host or "", host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


class HealthCheck:
    """Requests the health endpoint in a loop and tells the probe how it went."""

    def __init__(
        self, probe: Probe, life: Lifecycle, url: str, title: str, warm: list[str] | None = None
    ) -> None:
        self._probe = probe
        self._life = life
        self._url = url
        self._title = title
        self._unwarmed = list(warm or ())  # URLs still to request once before READY=1
        interval = probe.interval or 4 * STARTING_EVERY
        self._every_ready = interval / 4
        self._every_starting = min(STARTING_EVERY, self._every_ready)
        self._timeout = interval / 2

    def every(self) -> float:
        """Seconds from one request to the next."""
        return self._every_ready if self._probe.ready else self._every_starting

    def check(self) -> str | None:
        """None if the server answered 2xx, else why not."""
        try:
            with urllib.request.urlopen(self._url, timeout=self._timeout) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc))

    def warm_up(self) -> bool:
        """Request each URL not yet warmed once; True when none is left. Any HTTP answer counts."""
        while self._unwarmed:
            url = self._unwarmed[0]
            # A start-up step of its own: STATUS= says what the start waits for, and the
            # start gets STEP_TIMEOUT more seconds (EXTEND_TIMEOUT_USEC).
            self._life.step(f"requesting {url} once before READY=1 (its first request builds it)")
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=WARM_TIMEOUT):
                    pass
            except urllib.error.HTTPError:
                pass  # an answer all the same: that part of the server is built
            except (OSError, ValueError) as exc:
                log.info("%s warm-up request to %s: %s", self._title, url, getattr(exc, "reason", exc))
                return False
            took = time.monotonic() - started
            log.info("%s: %s answered its first request in %.1fs", self._title, url, took)
            self._unwarmed.pop(0)
        return True

    def run(self) -> None:
        while not self._life.stopping:
            started = self._probe.now()
            self.check_once(started)
            time.sleep(max(0.0, self.every() - (self._probe.now() - started)))

    def check_once(self, started: float) -> None:
        problem = self.check()
        answered = self._probe.now()
        if problem is None and not self._probe.ready and not self.warm_up():
            return  # not ready yet: asked again next round
        now = self._probe.now()
        if problem is None:
            status = f"serving {self._url} (answered in {(answered - started) * 1000:.0f} ms)"
            self._probe.progressed(now)
            self._probe.round_done(lambda: status, now)
        elif self._probe.ready:
            log.warning("%s health check failed: %s", self._title, problem)
            self._probe.failing(f"not answering {self._url}: {problem}")
