"""READY / WATCHDOG / STATUS decisions of the loop probe, on a controlled clock."""

import pytest

from airflow_systemd.lifecycle import ConfigError, Lifecycle
from airflow_systemd.notify import Notifier, Watchdog
from airflow_systemd.probe import LoopProbe, require_watchdog_margin
from tests.harness.notify_peer import NotifyPeer


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def setup(tmp_path, monkeypatch):
    peer = NotifyPeer(tmp_path / "notify")
    for name, value in peer.environ(watchdog_usec=4_000_000).items():
        monkeypatch.setenv(name, value)
    notifier = Notifier()
    clock = Clock()
    probe = LoopProbe(Lifecycle("t", notifier, 5.0), Watchdog(notifier, clock), clock=clock)
    yield peer, probe, clock
    peer.close()


def settle(peer, count):
    import time

    deadline = time.monotonic() + 5
    while len(peer.messages) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return peer.messages


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
    pings = [m for m in peer.messages if "WATCHDOG" in m.fields]
    assert len(pings) == 2
    probe.heartbeat_committed()  # a committed heartbeat at t=104.5 revives the pings
    clock.now = 105.0
    probe.iteration_done()
    settle(peer, 6)
    assert len([m for m in peer.messages if "WATCHDOG" in m.fields]) == 3


def test_watchdog_margin_refuses_an_interval_below_twice_the_heartbeat(tmp_path, monkeypatch):
    peer = NotifyPeer(tmp_path / "n")
    try:
        for name, value in peer.environ(watchdog_usec=9_000_000).items():
            monkeypatch.setenv(name, value)
        dog = Watchdog(Notifier())
        with pytest.raises(ConfigError, match="at least 10s"):
            require_watchdog_margin(dog, 5.0, "[scheduler] scheduler_heartbeat_sec")
        require_watchdog_margin(dog, 4.5, "[scheduler] scheduler_heartbeat_sec")
    finally:
        peer.close()
