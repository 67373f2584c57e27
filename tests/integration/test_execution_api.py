"""A real scheduler (LocalExecutor) whose tasks' execution API does not answer says so in STATUS=
and in the journal, and says so again when it answers; Airflow 2, which has none, says nothing.

``[core] execution_api_server_url`` points at a free loopback port with nothing listening; later
the test serves HTTP on that port itself (any answer is what counts). The scheduler's output file
is its journal stream (JOURNAL_STREAM), and its native entries are recorded instead of sent (a
``sitecustomize`` on the test's PYTHONPATH replaces ``systemd.journal.sendv``:
tests/harness/journal_stream.py), so the entries are checked with the fields journald would get.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from importlib import metadata

import pytest

from airflow_systemd import contract
from airflow_systemd.services.execution_api import CHECK_EVERY
from airflow_systemd.services.probe import STATUS_EVERY
from tests.harness.journal_stream import journal_stream_env, recording_path
from tests.harness.pgcluster import free_port

AIRFLOW_3 = metadata.version("apache-airflow").startswith("3.")
LOOP = 1.0  # [scheduler] scheduler_heartbeat_sec of the harness: about one loop
MARGIN = 4.0  # a busy 2-core CI machine
# From a change to STATUS= showing it: the next check, collected by the next loop, then STATUS=.
NOTICED_WITHIN = CHECK_EVERY + LOOP + STATUS_EVERY + MARGIN


class Answering:
    """An HTTP server on ``port`` answering every GET with 200, as the API server's health does."""

    def __init__(self, port: int) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scheduler(start_component, tmp_path):
    """A scheduler whose tasks' execution API URL is a port nothing listens on."""
    path = recording_path(tmp_path / "path")
    port = free_port()
    output = tmp_path / "scheduler0.log"  # what components.start opens (truncates) for index 0
    sched = start_component(
        "scheduler",
        env={
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            **journal_stream_env(output, path, tmp_path / "journal.jsonl"),
        },
    )
    assert sched.output == output
    sched.port = port
    sched.url = f"http://127.0.0.1:{port}/execution/"
    sched.journal = tmp_path / "journal.jsonl"
    try:
        sched.ready_at = sched.peer.wait_for("READY", "1", timeout=120).at
    except TimeoutError:
        pytest.fail(f"no READY=1; rc={sched.proc.poll()}\n{sched.text()[-3000:]}")
    return sched


def entries(sched, message_id: str) -> list[dict]:
    if not sched.journal.exists():
        return []
    found = [json.loads(line) for line in sched.journal.read_text().splitlines() if line.strip()]
    return [entry for entry in found if entry.get("MESSAGE_ID") == message_id]


def statuses(sched, since: float) -> list[tuple[float, str]]:
    return [(m.at, m.fields["STATUS"]) for m in sched.peer.with_field("STATUS") if m.at >= since]


def wait_for_status(sched, since: float, wanted, timeout: float) -> tuple[float, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [(at, text) for at, text in statuses(sched, since) if wanted(text)]
        if found:
            return found[0]
        assert sched.proc.poll() is None, sched.text()[-3000:]
        time.sleep(0.1)
    seen = [text for _, text in statuses(sched, since)][-3:]
    pytest.fail(f"no such STATUS= within {timeout:g}s; the last: {seen}\n{sched.text()[-2000:]}")


def test_a_scheduler_whose_tasks_cannot_reach_the_execution_api_says_so_until_it_answers(scheduler):
    sched = scheduler
    problem = f"tasks cannot reach the execution API at {sched.url}: [Errno 111] Connection refused"
    at, text = wait_for_status(sched, sched.ready_at, lambda s: problem in s, NOTICED_WITHIN)
    print(f"\nSTATUS={text}\n  {at - sched.ready_at:.1f}s after READY=1")
    assert text.startswith("running: loop "), text

    # Several checks later: still one event, the scheduler still runs and feeds the watchdog.
    time.sleep(2 * CHECK_EVERY + LOOP)
    (event,) = entries(sched, contract.EXECUTION_API_UNREACHABLE)
    print(json.dumps(event))
    assert event["PRIORITY"] == "4" and event["SYSLOG_IDENTIFIER"] == "airflow-scheduler"
    assert event["EXECUTION_API_URL"] == sched.url
    assert event["EXECUTION_API_ERROR"] == "[Errno 111] Connection refused"
    assert event["MESSAGE"].startswith(problem), event
    assert sched.proc.poll() is None
    pings = [m.at for m in sched.peer.with_field("WATCHDOG", "1") if m.at > at]
    assert len(pings) >= 3, "the watchdog was not fed while the execution API was unreachable"
    assert problem in statuses(sched, at)[-1][1]

    server = Answering(sched.port)
    try:
        answered = time.monotonic()
        at, text = wait_for_status(sched, answered, lambda s: "execution API" not in s, NOTICED_WITHIN)
        print(f"STATUS={text}\n  {at - answered:.1f}s after the port answered")
        assert "/execution/health" in server.paths
        deadline = time.monotonic() + 5
        while not entries(sched, contract.EXECUTION_API_REACHABLE) and time.monotonic() < deadline:
            time.sleep(0.1)
        (event,) = entries(sched, contract.EXECUTION_API_REACHABLE)
        print(json.dumps(event))
        assert event["PRIORITY"] == "6" and event["EXECUTION_API_URL"] == sched.url
        assert float(event["UNREACHABLE_SECONDS"]) >= 2 * CHECK_EVERY
        assert len(entries(sched, contract.EXECUTION_API_UNREACHABLE)) == 1
        assert sched.proc.poll() is None
    finally:
        server.close()


def test_an_airflow_2_scheduler_checks_nothing(scheduler):
    sched = scheduler
    time.sleep(CHECK_EVERY + LOOP + STATUS_EVERY + MARGIN)
    assert all("execution API" not in text for _, text in statuses(sched, 0)), statuses(sched, 0)[-3:]
    assert not entries(sched, contract.EXECUTION_API_UNREACHABLE)
    assert sched.proc.poll() is None


# Each Airflow line gets the one that applies: not collected rather than skipped (CI=true).
if AIRFLOW_3:
    del test_an_airflow_2_scheduler_checks_nothing
else:
    del test_a_scheduler_whose_tasks_cannot_reach_the_execution_api_says_so_until_it_answers
