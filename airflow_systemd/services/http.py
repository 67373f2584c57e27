"""Airflow's HTTP servers: the API server (3.x) and the webserver (2.10).

Their main loop belongs to uvicorn or gunicorn, in code we do not hook. What proves that such
a service works is that it answers: a thread of the main process requests the health endpoint
every quarter watchdog interval, sends READY=1 on the first answer and WATCHDOG=1 only after
an answer. A server that hangs (a frozen database under the health check, dead workers, a
wedged event loop) stops answering, and so stops the pings.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from airflow_systemd.airflow import startup, support
from airflow_systemd.lifecycle import Lifecycle, log
from airflow_systemd.notify import Watchdog

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
    prober = HealthProber(life, Watchdog(life.notifier), url, service.title)
    threading.Thread(target=prober.run, name="health-prober", daemon=True).start()
    life.step(f"starting the {service.title}")
    support.run_airflow_command(service.command, airflow_args)


def health_url(host: str, port: int, path: str) -> str:
    # A wildcard listen address is reachable on loopback.
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host or "", host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


class HealthProber:
    def __init__(self, life: Lifecycle, watchdog: Watchdog, url: str, title: str) -> None:
        self._life = life
        self._watchdog = watchdog
        self._url = url
        self._title = title
        interval = watchdog.interval or 4 * PROBE_EVERY
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
        ready = False
        last_status = float("-inf")
        while not self._life.stopping:
            started = time.monotonic()
            problem = self.check()
            now = time.monotonic()
            took = (now - started) * 1000
            status = f"serving {self._url} (answered in {took:.0f} ms)" if problem is None else None
            if problem is None and not ready:
                ready = True
                self._life.ready(status)
                last_status = now
            if problem is None and self._watchdog.due(now):
                extra = (f"STATUS={status}",) if now - last_status >= 2 else ()
                self._watchdog.ping(now, *extra)
                last_status = now if extra else last_status
            elif problem is not None and ready:
                log.warning("%s health check failed: %s", self._title, problem)
                self._life.notifier.status(f"not answering {self._url}: {problem}")
            time.sleep(max(0.0, self._every - (time.monotonic() - started)))
