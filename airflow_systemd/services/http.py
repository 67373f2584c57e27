"""Airflow's HTTP servers: the API server (3.x) and the webserver (2.10).

Their main loop belongs to uvicorn or gunicorn, in code we do not hook. What proves that such
a service works is that it answers: a thread of the main process requests the health endpoint
every quarter watchdog interval (at most every PROBE_EVERY seconds) and reports each answer to
the :class:`~.probe.Probe`, which sends READY=1 on the first and WATCHDOG=1 only after one. A
server that hangs (a frozen database under the health check, dead workers, a wedged event
loop) stops answering, and so stops the pings.
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

PROBE_EVERY = 1.0  # seconds, at most; faster with a short watchdog


@dataclass(frozen=True)
class HttpService:
    command: str
    title: str
    health_path: str
    host_arg: str  # the attribute of the parsed arguments that holds the listen address


def run(life: Lifecycle, service: HttpService, airflow_args: list[str]) -> None:
    parsed = startup.prepare(life, service.command, airflow_args)
    url = health_url(getattr(parsed, service.host_arg), parsed.port, service.health_path)
    prober = HealthCheck(Probe(life), life, url, service.title)
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

    def __init__(self, probe: Probe, life: Lifecycle, url: str, title: str) -> None:
        self._probe = probe
        self._life = life
        self._url = url
        self._title = title
        interval = probe.interval or 4 * PROBE_EVERY
        self._every = min(PROBE_EVERY, interval / 4)
        self._timeout = interval / 2

    def check(self) -> str | None:
        """None if the server answered 2xx, else why not."""
        try:
            with urllib.request.urlopen(self._url, timeout=self._timeout) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc))

    def run(self) -> None:
        while not self._life.stopping:
            started = self._probe.now()
            self.check_once(started)
            time.sleep(max(0.0, self._every - (self._probe.now() - started)))

    def check_once(self, started: float) -> None:
        problem = self.check()
        now = self._probe.now()
        if problem is None:
            status = f"serving {self._url} (answered in {(now - started) * 1000:.0f} ms)"
            self._probe.progressed(now)
            self._probe.round_done(lambda: status, now)
        elif self._probe.ready:
            log.warning("%s health check failed: %s", self._title, problem)
            self._probe.failing(f"not answering {self._url}: {problem}")
