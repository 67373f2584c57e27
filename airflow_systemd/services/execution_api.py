"""Can the tasks this scheduler runs reach the execution API? Airflow 3 only; a report, never a kill.

An Airflow 3 task does not use the metadata database: it reports to the API server's execution
API, at ``[core] execution_api_server_url``. Without an API server there, a scheduler looks
healthy (its loop turns, its heartbeats reach the database, `systemctl status` says
``active (running)``) while every task it starts fails with ``httpx.ConnectError: [Errno 111]
Connection refused``. So when the scheduler's executor runs tasks on this host (``is_local``:
the LocalExecutor; a CeleryExecutor's tasks run on the workers, which reach the API on their own
network path), its loop asks that URL every :data:`CHECK_EVERY` seconds, with a
:data:`TIMEOUT` second timeout:

* any HTTP answer means the API server is there (``GET URL/health``, which the execution API
  serves without authentication; a 502, 503 or 504 is a proxy or gateway speaking for a server
  that is not, and does not count);
* no answer (connection refused, timed out, a name that does not resolve, a URL that is not
  one): STATUS= says ``tasks cannot reach the execution API at URL: REASON``, and the journal
  gets one :data:`~airflow_systemd.contract.EXECUTION_API_UNREACHABLE` warning;
* an answer after that: one :data:`~airflow_systemd.contract.EXECUTION_API_REACHABLE`, and
  STATUS= is the scheduler's usual one again.

One event per change, not per check: an API server down for an hour adds two entries. Nothing
is killed or restarted: the scheduler is not at fault, and restarting it would not bring the
API server up.

The request runs in a short-lived thread that the loop starts and later collects, so the loop
never waits on the network: it feeds systemd's watchdog, and the socket timeout does not bound
a name lookup (getaddrinfo can take seconds per nameserver). Every decision (events, STATUS=) is
made on the loop's thread when it collects an answer. The URL is the one the LocalExecutor gives
its tasks (Airflow's own ``get_execution_api_server_url``, with its default
``http://localhost:8080/execution/``).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable

from airflow_systemd import journal
from airflow_systemd.contract import EXECUTION_API_REACHABLE, EXECUTION_API_UNREACHABLE

CHECK_EVERY = 5.0  # seconds between requests
TIMEOUT = 1.0  # seconds to connect, and to answer: the API server answers /health in milliseconds
GATEWAY_ERRORS = (502, 503, 504)  # a proxy's answer for a server behind it that did not answer
DEFAULT_URL = "http://localhost:8080/execution/"  # Airflow's default, where it has no resolver


def health_url(url: str) -> str:
    """The execution API's health endpoint under ``url`` (with or without its final slash)."""
    return url.rstrip("/") + "/health"


def ask(url: str, timeout: float = TIMEOUT) -> str | None:
    """None if an HTTP server answers at ``url``'s health endpoint, else why not (one line)."""
    try:
        with urllib.request.urlopen(health_url(url), timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:  # an answer: only a gateway's does not count
        return f"HTTP {exc.code} {exc.reason}" if exc.code in GATEWAY_ERRORS else None
    except Exception as exc:  # whatever it is (refused, timeout, not HTTP), tasks would fail on it
        cause = getattr(exc, "reason", exc)  # URLError wraps the socket's error
        if isinstance(cause, TimeoutError):
            return f"no answer within {timeout:g}s"
        return str(cause) or type(cause).__name__


class Endpoint:
    """One execution API URL: when to ask it, what it last said, what to report."""

    def __init__(
        self,
        url: str,
        clock: Callable[[], float] = time.monotonic,
        ask: Callable[[str], str | None] = ask,
    ) -> None:
        self.url = url
        self._clock = clock
        self._ask = ask
        self._asked = float("-inf")
        self._thread: threading.Thread | None = None
        self._answer: str | None = None
        self.problem: str | None = None  # None: answered, or not asked yet
        self._since = 0.0  # when the current problem was first seen

    def tick(self) -> None:
        """Called by the loop: collect a finished request, start the next one when due."""
        now = self._clock()
        if self._thread is not None:
            if self._thread.is_alive():
                # Still waiting (a name lookup the timeout does not bound): that is no answer.
                if now - self._asked >= CHECK_EVERY:
                    self.observe(f"no answer within {now - self._asked:.0f}s", now)
                return
            self._thread = None
            self.observe(self._answer, now)
        if now - self._asked >= CHECK_EVERY:
            self._asked = now
            self._thread = threading.Thread(target=self._request, name="execution-api-check", daemon=True)
            self._thread.start()

    def _request(self) -> None:
        self._answer = self._ask(self.url)

    def observe(self, problem: str | None, now: float) -> None:
        """What the last request found: report a change, once."""
        if problem is not None and self.problem is None:
            self._since = now
            journal.event(
                EXECUTION_API_UNREACHABLE,
                f"tasks cannot reach the execution API at {self.url}: {problem}: every task this "
                "scheduler runs fails until it answers (is airflow-api-server running? is "
                "[core] execution_api_server_url right?)",
                level=logging.WARNING,
                EXECUTION_API_URL=self.url,
                EXECUTION_API_ERROR=problem,
            )
        elif problem is None and self.problem is not None:
            down = now - self._since
            journal.event(
                EXECUTION_API_REACHABLE,
                f"tasks reach the execution API at {self.url} again (unreachable for {down:.0f}s)",
                EXECUTION_API_URL=self.url,
                UNREACHABLE_SECONDS=f"{down:.0f}",
            )
        self.problem = problem

    def status(self) -> str:
        if self.problem is None:
            return ""
        return f"tasks cannot reach the execution API at {self.url}: {self.problem}"


class ExecutionApiCheck:
    """The check of a scheduler: one :class:`Endpoint` per URL its local executors give tasks
    (one, unless teams configure their own), none when its tasks run elsewhere."""

    def __init__(self, urls_of: Callable[[Iterable[object]], list[str]]) -> None:
        self._urls_of = urls_of
        self.endpoints: list[Endpoint] | None = None  # known once the loop has its executors

    def tick(self, executors: Iterable[object]) -> None:
        if self.endpoints is None:
            self.endpoints = [Endpoint(url) for url in self._urls_of(executors)]
        for endpoint in self.endpoints:
            endpoint.tick()

    def status(self) -> str:
        return ", ".join(text for text in (e.status() for e in self.endpoints or ()) if text)


# --- The Airflow part: which URL the LocalExecutor gives its tasks, and the hook, for Airflow 3.


def local_task_urls(executors: Iterable[object]) -> list[str]:
    """The execution API URLs of the executors that run tasks on this host."""
    from airflow.executors import base_executor

    resolve = getattr(base_executor, "get_execution_api_server_url", None)
    urls = set()
    for executor in executors:
        if not getattr(executor, "is_local", False):
            continue
        if resolve is not None:  # Airflow 3.3: per team, from the executor's own configuration
            try:
                urls.add(resolve(executor.conf))
            except (AttributeError, TypeError):  # an executor without teams, or a resolver without
                urls.add(resolve())
        else:
            from airflow.configuration import conf

            urls.add(conf.get("core", "execution_api_server_url", fallback=DEFAULT_URL))
    return sorted(urls)


def install(runner_class) -> ExecutionApiCheck | None:
    """Make ``SchedulerJobRunner._do_scheduling`` tick the check after its own work. None
    (nothing installed) on Airflow 2, whose tasks use the database directly."""
    import airflow

    if int(airflow.__version__.split(".")[0]) < 3:
        return None
    check = ExecutionApiCheck(local_task_urls)
    do_scheduling = runner_class._do_scheduling

    def do_scheduling_then_check(self, *args, **kwargs):
        result = do_scheduling(self, *args, **kwargs)
        check.tick(self.executors)
        return result

    do_scheduling_then_check.__wrapped__ = do_scheduling
    runner_class._do_scheduling = do_scheduling_then_check
    return check
