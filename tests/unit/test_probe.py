"""READY / WATCHDOG / STATUS decisions of the one probe, for a job loop and an HTTP server."""

import http.server
import threading
import time

import pytest

from airflow_systemd import journal
from airflow_systemd.lifecycle import ConfigError, Lifecycle
from airflow_systemd.notify import Notifier
from airflow_systemd.services import http as http_service
from airflow_systemd.services.http import HealthCheck
from airflow_systemd.services.job import JobLoop
from airflow_systemd.services.probe import Probe, require_watchdog_margin
from tests.harness.notify_peer import NotifyPeer


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def setup(peer):
    clock = Clock()
    probe = JobLoop(Probe(Lifecycle("t", Notifier(), 5.0), clock=clock), "t")
    yield peer, probe, clock


def settle(peer, count):
    deadline = time.monotonic() + 5
    while len(peer.messages) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return peer.messages


def pings(peer):
    return [m for m in peer.messages if "WATCHDOG" in m.fields]


def test_ready_on_first_iteration_with_a_ping(setup):
    peer, probe, _clock = setup
    probe.iteration_done()
    msgs = settle(peer, 2)
    assert msgs[0].fields["READY"] == "1" and "loop 1" in msgs[0].fields["STATUS"]
    assert msgs[1].fields["WATCHDOG"] == "1"


def test_no_ping_once_the_heartbeat_is_older_than_the_interval(setup):
    peer, probe, clock = setup
    probe.iteration_done()  # READY + ping at t=100
    for t in (102.0, 104.5):  # heartbeat age 2 s, 4.5 s: the second is too old
        clock.now = t
        probe.iteration_done()
    settle(peer, 4)
    assert len(pings(peer)) == 2
    probe.heartbeat_committed()  # a committed heartbeat at t=104.5 revives the pings
    clock.now = 105.0
    probe.iteration_done()
    settle(peer, 6)
    assert len(pings(peer)) == 3


class Recorder:
    """A notifier that keeps what it is asked to send."""

    def __init__(self, watchdog_interval):
        self.watchdog_interval = watchdog_interval
        self.sent = []

    def send(self, *lines):
        self.sent.append(lines)


def test_watchdog_pings_at_most_every_half_interval():
    notifier = Recorder(4.0)
    probe = Probe(Lifecycle("t", notifier, 5.0))
    sent = []
    for now in [0.0, 1.0, 1.9, 2.0, 3.0, 4.1, 5.0, 6.1]:
        before = len(notifier.sent)
        probe.progressed(now)
        probe.round_done(lambda: "fine", now)
        if any("WATCHDOG=1" in lines for lines in notifier.sent[before:]):
            sent.append(now)
    assert sent == [0.0, 2.0, 4.1, 6.1]


def test_status_every_two_seconds_even_without_a_ping(peer):
    probe = Probe(Lifecycle("t", Notifier(), 5.0))
    probe.round_done(lambda: "first", 0.0)  # READY=1 with STATUS=first, then a ping
    for now in (1.0, 2.5, 3.0, 5.0):  # no progress since t=0: pings stop at t=4
        probe.round_done(lambda now=now: f"at {now}", now)
    settle(peer, 4)
    assert [m.fields.get("STATUS") for m in peer.messages if "READY" not in m.fields] == [
        None,  # the first ping
        "at 2.5",  # with the second ping (heartbeat 2.5 s old)
        "at 5.0",  # alone: the last progress is 5 s old
    ]


def test_watchdog_disabled_without_an_interval(tmp_path, monkeypatch):
    peer = NotifyPeer(tmp_path / "n")
    try:
        for name, value in peer.environ().items():
            monkeypatch.setenv(name, value)
        probe = Probe(Lifecycle("t", Notifier(), 5.0))
        assert probe.interval is None
        for now in (0.0, 3.0, 6.0):
            probe.progressed(now)
            probe.round_done(lambda: "fine", now)
        settle(peer, 3)
        time.sleep(0.2)
        assert peer.messages[0].fields["READY"] == "1"
        assert not pings(peer)
    finally:
        peer.close()


def test_watchdog_margin_refuses_an_interval_below_twice_the_heartbeat(tmp_path, monkeypatch):
    peer = NotifyPeer(tmp_path / "n")
    try:
        for name, value in peer.environ(watchdog_usec=9_000_000).items():
            monkeypatch.setenv(name, value)
        interval = Notifier().watchdog_interval
        with pytest.raises(ConfigError, match="at least 10s"):
            require_watchdog_margin(interval, 5.0, "[scheduler] scheduler_heartbeat_sec")
        require_watchdog_margin(interval, 4.5, "[scheduler] scheduler_heartbeat_sec")
        require_watchdog_margin(None, 60.0, "[scheduler] scheduler_heartbeat_sec")  # no watchdog
    finally:
        peer.close()


class HealthServer(http.server.ThreadingHTTPServer):
    """A health endpoint whose answer the test sets; other paths answer ``codes[path]`` (404
    if unset) after ``delays[path]`` seconds. Every request's path is recorded."""

    code = 200

    def __init__(self):
        server = self
        self.codes: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.paths: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.paths.append(self.path)
                time.sleep(server.delays.get(self.path, 0))
                self.send_response(
                    server.code if self.path == "/health" else server.codes.get(self.path, 404)
                )
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/health"


@pytest.fixture
def health(peer):
    server = HealthServer()
    clock = Clock()
    life = Lifecycle("t", Notifier(), 5.0)
    check = HealthCheck(Probe(life, clock=clock), life, server.url, "API server")
    yield peer, server, check, clock
    server.shutdown()
    server.server_close()


def test_http_ready_on_the_first_answer_not_before(health):
    peer, server, check, clock = health
    server.code = 503
    check.check_once(clock.now)  # no answer yet: the start-up step's STATUS= stays
    time.sleep(0.2)
    assert peer.messages == []
    server.code = 200
    clock.now = 101.0
    check.check_once(clock.now)
    msgs = settle(peer, 2)
    assert msgs[0].fields["READY"] == "1" and msgs[0].fields["STATUS"].startswith(f"serving {server.url}")
    assert msgs[1].fields["WATCHDOG"] == "1"


def test_http_pings_stop_while_the_server_does_not_answer(health, caplog):
    peer, server, check, clock = health
    check.check_once(clock.now)  # READY + ping at t=100
    server.code = 500
    for t in (102.0, 104.0, 106.0):
        clock.now = t
        check.check_once(t)
    settle(peer, 5)
    assert len(pings(peer)) == 1
    assert peer.messages[-1].fields["STATUS"] == f"not answering {server.url}: HTTP 500"
    assert "API server health check failed: HTTP 500" in caplog.text
    server.code = 200  # answering again: the pings resume with the next one due
    clock.now = 107.0
    check.check_once(clock.now)
    settle(peer, 6)
    assert len(pings(peer)) == 2
    assert peer.messages[-1].fields["STATUS"].startswith(f"serving {server.url}")


def test_a_failing_heartbeat_is_one_event_per_streak(setup, caplog):
    _, loop, _ = setup
    caplog.set_level("INFO", logger="airflow_systemd")

    def failed_events():
        return [r for r in caplog.records if getattr(r, "MESSAGE_ID", None) == journal.HEARTBEAT_FAILED]

    for failed in (False, True, True, True):
        loop.heartbeat_failed(failed)
    assert len(failed_events()) == 1
    assert failed_events()[0].levelname == "WARNING"
    loop.heartbeat_failed(False)
    assert "the heartbeat succeeds again" in caplog.text
    loop.heartbeat_failed(True)  # a new streak
    assert len(failed_events()) == 2


def test_http_requests_every_second_until_ready_then_every_quarter_interval(tmp_path, monkeypatch):
    # The shipped WatchdogSec=30s: READY=1 within a second of the server's first answer, then a
    # request every 7.5 s (480 an hour; one a second cost 10 times the Helm chart's probe).
    peer = NotifyPeer(tmp_path / "n")
    server = HealthServer()
    try:
        for name, value in peer.environ(watchdog_usec=30_000_000).items():
            monkeypatch.setenv(name, value)
        life = Lifecycle("t", Notifier(), 5.0)
        check = HealthCheck(Probe(life), life, server.url, "API server")
        assert check.every() == 1.0
        check.check_once(time.monotonic())
        assert settle(peer, 1)[0].fields["READY"] == "1"
        assert check.every() == 7.5
    finally:
        server.shutdown()
        server.server_close()
        peer.close()


def warm_check(server, warm):
    life = Lifecycle("t", Notifier(), 5.0)
    return HealthCheck(Probe(life, clock=Clock()), life, server.url, "API server", warm)


def test_http_ready_only_once_the_warm_up_path_answered_and_it_is_asked_once(peer):
    # The API server builds its execution API on that API's first request: it happens before
    # READY=1 (under TimeoutStartSec=), not under the watchdog in the first task's request.
    server = HealthServer()
    try:
        server.codes["/execution/health"] = 200
        server.delays["/execution/health"] = 0.5  # a slow first request: READY=1 waits for it
        check = warm_check(server, [server.url.replace("/health", "/execution/health")])
        check.check_once(100.0)
        step, ready = settle(peer, 3)[:2]
        # a start-up step of its own first: STATUS= names it, and the start gets more time
        assert step.fields["STATUS"].startswith("requesting http://127.0.0.1:")
        assert "EXTEND_TIMEOUT_USEC" in step.fields
        assert ready.fields["READY"] == "1"
        assert server.paths == ["/health", "/execution/health"]
        check.check_once(102.0)
        assert server.paths == ["/health", "/execution/health", "/health"]  # warmed once only
    finally:
        server.shutdown()
        server.server_close()


def test_http_warm_up_counts_any_http_answer_a_404_too(peer):
    # An API server run without the execution API (--apps core) answers 404 there: still ready.
    server = HealthServer()
    try:
        check = warm_check(server, [server.url.replace("/health", "/execution/health")])
        check.check_once(100.0)
        assert settle(peer, 3)[1].fields["READY"] == "1"
        assert server.paths == ["/health", "/execution/health"]
    finally:
        server.shutdown()
        server.server_close()


def test_http_not_ready_until_the_warm_up_request_is_answered(peer, monkeypatch):
    monkeypatch.setattr(http_service, "WARM_TIMEOUT", 0.2)
    server = HealthServer()
    try:
        server.codes["/execution/health"] = 200
        server.delays["/execution/health"] = 1.0  # past WARM_TIMEOUT: no answer this round
        check = warm_check(server, [server.url.replace("/health", "/execution/health")])
        check.check_once(100.0)
        time.sleep(0.2)
        assert not peer.with_field("READY", "1")  # the health endpoint answered, the warm-up did not
        server.delays.clear()
        check.check_once(101.0)  # asked again, answered: READY=1
        settle(peer, 4)
        assert peer.with_field("READY", "1")
        assert server.paths.count("/execution/health") == 2
    finally:
        server.shutdown()
        server.server_close()
