"""Debian's redis-server installed in the container (tests/harness/redis.py: SandboxRedis), the
CeleryExecutor's broker of the system tier: Debian's own unit, and no listener on the host's
port 6379 although the container shares the host's network namespace."""

from __future__ import annotations

import pytest

from tests.harness.redis import SandboxRedis, ping


@pytest.fixture(scope="module")
def broker(sandbox):
    broker = SandboxRedis(sandbox)
    broker.install()
    yield broker
    broker.thaw()


def listeners(sandbox, port: int) -> set[str]:
    out = sandbox.exec("ss", "-Hltn", f"sport = :{port}").stdout
    return {line.split()[3] for line in out.splitlines()}


def test_debians_unit_serves_on_loopback_and_a_free_port_only(broker):
    sb = broker.sb
    assert sb.show(broker.unit, "FragmentPath") == "/lib/systemd/system/redis-server.service"
    assert sb.show(broker.unit, "ActiveState") == "active"
    assert sb.exec("dpkg-query", "-W", "-f=${Version}", "redis-server").stdout.startswith("5:7.0")
    assert broker.port != 6379
    config = sb.exec("redis-cli", "-p", str(broker.port), "config", "get", "*").stdout.split("\n")
    config = dict(zip(config[::2], config[1::2]))
    assert (config["bind"], config["port"], config["save"]) == (
        "127.0.0.1",
        str(broker.port),
        "3600 1 300 100 60 10000",
    )
    assert listeners(sb, broker.port) == {f"127.0.0.1:{broker.port}"}
    assert ping("127.0.0.1", broker.port)  # from the host's side of the shared namespace


def test_freeze_makes_it_unresponsive_thaw_and_restart_bring_it_back_on_the_same_port(broker):
    broker.freeze()
    assert not broker.ping(timeout=1)
    broker.thaw()
    assert broker.ping()
    first = broker.main_pid()
    broker.restart()
    assert broker.main_pid() != first
    assert listeners(broker.sb, broker.port) == {f"127.0.0.1:{broker.port}"}
