"""The test library's private Redis (tests/harness/redis.py): what the broker tests rely on.

redis-py (the client Celery's Redis transport uses) talks to it, as a worker would; on
Airflow 2, which has neither, this module is not collected (tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests.harness.processes import alive
from tests.harness.redis import RedisServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    srv = RedisServer()
    srv.start()
    yield srv
    srv.remove()


def client(srv: RedisServer, timeout: float = 1.0):
    return redis.Redis.from_url(srv.url, socket_timeout=timeout, socket_connect_timeout=timeout)


def test_answers_ping_on_a_free_loopback_port_with_debians_binary(server):
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.port != 6379
    assert client(server).ping() is True
    listening = {
        c.laddr for c in psutil.Process(server.proc.pid).net_connections("inet") if c.status == "LISTEN"
    }
    assert {(addr.ip, addr.port) for addr in listening} == {("127.0.0.1", server.port)}
    exe = psutil.Process(server.proc.pid).exe()
    assert exe.endswith("/.cache/redis-root/usr/bin/redis-check-rdb"), exe  # Debian's one binary


def test_keeps_nothing_on_disk_unless_asked(server):
    client(server).set("queued", "1")
    server.restart()
    assert client(server).get("queued") is None
    assert not list(server.base.glob("*.rdb")) and not list(server.base.glob("appendonly*"))


def test_a_persistent_server_keeps_its_data_over_a_restart():
    with RedisServer(persistent=True) as srv:
        client(srv).set("queued", "1")
        srv.restart()
        assert client(srv).get("queued") == b"1"


def test_freeze_makes_a_ping_time_out_and_thaw_answers_again(server):
    c = client(server, timeout=1.0)
    assert c.ping()
    server.freeze()
    assert {p.status() for p in map(psutil.Process, server.pids())} == {psutil.STATUS_STOPPED}
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        c.ping()  # the connection is open: the request is sent and waits for an answer
    assert 0.9 <= time.monotonic() - started < 3
    with pytest.raises(redis.exceptions.TimeoutError):
        client(server, timeout=1.0).ping()  # a new one too: the kernel still accepts it
    server.thaw()
    assert client(server).ping()


def test_restart_comes_back_on_the_same_port_and_clients_reconnect(server):
    c = client(server)
    assert c.ping()
    port, first = server.port, server.proc.pid
    server.restart()
    assert server.port == port and server.proc.pid != first
    assert not alive([first])
    assert client(server).ping()
    # redis-py retries once on a broken connection, as a worker's consumer reconnects
    assert c.ping()


def test_stop_leaves_no_process_and_start_brings_it_back(server):
    pids = server.pids()
    assert pids
    server.stop()
    assert not alive(pids)
    with pytest.raises(redis.exceptions.ConnectionError):
        client(server).ping()
    server.start()
    assert client(server).ping()


def test_stop_of_a_frozen_server_ends_it(server):
    pids = server.pids()
    server.freeze()
    server.stop(timeout=5)
    assert not alive(pids)


def test_remove_leaves_no_process_and_no_directory():
    srv = RedisServer()
    srv.start()
    pids, base = srv.pids(), srv.base
    srv.remove()
    assert not alive(pids)
    assert not base.exists()


def test_a_test_process_killed_by_sigkill_takes_its_server_along(tmp_path):
    script = (
        "import sys, time\n"
        "from tests.harness.redis import RedisServer\n"
        "from pathlib import Path\n"
        f"srv = RedisServer(base=Path({str(tmp_path)!r}))\n"
        "srv.start()\n"
        "print(srv.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        server = int(runner.stdout.readline())
        assert alive([server])
    finally:
        runner.kill()
        runner.wait()
    deadline = time.monotonic() + 5
    while alive([server]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive([server])
