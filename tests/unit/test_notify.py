"""sd_notify and watchdog timing, against a real AF_UNIX datagram socket."""

import os

import pytest

from airflow_systemd.notify import Notifier, watchdog_interval
from tests.harness.notify_peer import NotifyPeer


@pytest.fixture
def peer(tmp_path):
    p = NotifyPeer(tmp_path / "notify")
    yield p
    p.close()


def test_watchdog_interval_follows_sd_watchdog_enabled():
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}, pid) == 4.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(pid)}, pid) == 4.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(pid + 1)}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid) is None
    assert watchdog_interval({}, pid) is None


def use(monkeypatch, environ):
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def test_notifier_sends_and_removes_the_variables_from_the_environment(peer, monkeypatch):
    use(monkeypatch, {**peer.environ(watchdog_usec=3_000_000), "WATCHDOG_PID": str(os.getpid())})
    notifier = Notifier()
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)
    assert notifier.enabled and notifier.watchdog_interval == 3.0
    notifier.send("READY=1", "STATUS=up")
    msg = peer.wait_for("READY", timeout=5)
    assert msg.fields == {"READY": "1", "STATUS": "up"}
    assert msg.pid == os.getpid()


def test_notifier_is_silent_outside_systemd(monkeypatch):
    use(monkeypatch, {"WATCHDOG_USEC": "1000000"})
    notifier = Notifier()
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.send("READY=1")  # must not raise


def test_notifier_never_sends_from_a_forked_child(peer, monkeypatch):
    use(monkeypatch, peer.environ())
    notifier = Notifier()
    pid = os.fork()
    if pid == 0:
        notifier.send("FROM=child")
        os._exit(0)
    os.waitpid(pid, 0)
    notifier.send("FROM=parent")
    peer.wait_for("FROM", "parent", timeout=5)
    assert not peer.with_field("FROM", "child")


def test_grant_watchdog_rearms_with_at_least_the_loop_interval(peer, monkeypatch):
    use(monkeypatch, peer.environ(watchdog_usec=4_000_000))
    notifier = Notifier()
    notifier.grant_watchdog(30)
    notifier.grant_watchdog(1)  # never shorter than the configured interval
    notifier.send("DONE=1")
    peer.wait_for("DONE", "1", timeout=5)
    grants = [m.fields for m in peer.with_field("WATCHDOG_USEC")]
    assert grants == [
        {"WATCHDOG": "1", "WATCHDOG_USEC": "30000000"},
        {"WATCHDOG": "1", "WATCHDOG_USEC": "4000000"},
    ]


def test_grant_watchdog_never_enables_one_that_is_not_configured(peer, monkeypatch):
    use(monkeypatch, peer.environ())
    notifier = Notifier()
    notifier.grant_watchdog(30)
    notifier.send("DONE=1")
    peer.wait_for("DONE", "1", timeout=5)
    assert not peer.with_field("WATCHDOG_USEC")
