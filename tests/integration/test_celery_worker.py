"""`airflow-systemd celery-worker`: real Airflow 3.3.2, its Celery provider, a private Redis from
Debian's binaries and the private PostgreSQL, with a notify peer in place of systemd.

The tasks run here are a test-only Celery task (``afsd.sleep``, written into the test's own
PYTHONPATH and loaded by the worker through ``[celery] extra_celery_config``'s ``imports``): it
runs in the worker's prefork pool like Airflow's ``execute_workload``, which needs a scheduler
and an API server (the system tier runs real DAGs through the workers).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.harness.airflow_env import CHECKOUT, FAULTS
from tests.harness.pgcluster import free_port
from tests.harness.processes import alive
from tests.harness.redis import RedisServer

WATCHDOG = 4.0
TASKS_MODULE = """
import time
from pathlib import Path
from celery import shared_task

@shared_task(name="afsd.sleep", acks_late=True)
def sleep(seconds, marker):
    Path(marker + ".started").write_text(str(time.time()))
    time.sleep(seconds)
    Path(marker + ".done").write_text(str(time.time()))
    return seconds
"""


@pytest.fixture
def broker():
    srv = RedisServer()
    srv.start()
    yield srv
    srv.remove()


def worker_env(tmp_path: Path, broker_url: str, **extra: str) -> dict[str, str]:
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "afsd_celery_tasks.py").write_text(TASKS_MODULE)
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": ["afsd_celery_tasks"]}),
        "PYTHONPATH": os.pathsep.join((str(tasks), str(FAULTS), str(CHECKOUT))),
        **extra,
    }


@pytest.fixture
def start_worker(start_component, tmp_path):
    def start(broker_url: str, *args: str, env: dict[str, str] | None = None, serve_logs=False, **options):
        return start_component(
            "celery-worker",
            "--queues",
            "default",
            "--celery-hostname",
            f"default-{os.getpid()}@%h",
            *(() if serve_logs else ("--skip-serve-logs",)),
            *args,
            env=worker_env(tmp_path, broker_url, **(env or {})),
            **options,
        )

    return start


def client(url: str) -> Celery:
    return Celery("afsd-test", broker=url)


def pings_after(worker, t: float) -> list[float]:
    return [m.at for m in worker.peer.with_field("WATCHDOG", "1") if m.at > t]


def test_ready_once_connected_and_consuming_with_status_and_pings_from_the_main_process(broker, start_worker):
    worker = start_worker(broker.url, watchdog=WATCHDOG)
    ready = worker.peer.wait_for("READY", "1", timeout=120)
    print(f"start-to-READY: {ready.at - worker.started:.1f}s")
    assert ready.pid == worker.proc.pid
    # The tick ran in the consumer's event loop: the main thread of the prefork pool's worker.
    assert "first tick of the consumer probe, in thread MainThread" in worker.text()
    assert ready.fields["STATUS"].startswith("consuming default: 0/2 running"), ready.fields
    deadline = time.monotonic() + 3 * WATCHDOG
    while len(pings_after(worker, ready.at)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    pings = [m for m in worker.peer.with_field("WATCHDOG", "1")]
    assert len(pings) >= 3 and {m.pid for m in pings} == {worker.proc.pid}
    # No reload: a SIGHUP is logged and ignored, the worker keeps working.
    os.kill(worker.proc.pid, signal.SIGHUP)
    hup = time.monotonic()
    time.sleep(WATCHDOG)
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert pings_after(worker, hup + 1)
    assert "SIGHUP ignored" in worker.text()


def test_not_ready_while_the_broker_is_down_and_says_so_then_ready_when_it_comes(start_worker, tmp_path):
    port = free_port()
    worker = start_worker(f"redis://127.0.0.1:{port}/0", watchdog=WATCHDOG)
    waiting = worker.peer.wait_for("STATUS", None, timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        statuses = [m.fields["STATUS"] for m in worker.peer.with_field("STATUS")]
        if any("waiting for the broker" in s for s in statuses):
            break
        time.sleep(0.2)
    assert any(f"waiting for the broker redis://127.0.0.1:{port}/0 (attempt" in s for s in statuses), statuses
    time.sleep(3)
    assert not worker.peer.with_field("READY"), waiting
    assert worker.proc.poll() is None, worker.text()
    with RedisServer(port=port):
        worker.peer.wait_for("READY", "1", timeout=60)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:notaport/0", "Port could not be cast"),
        ("nosuchtransport://localhost", "No such transport: nosuchtransport"),
        ("redis//localhost:6379/0", "is not a URL"),
        ("redis://127.0.0.1:6379/queues", "the Redis database must be a number"),
    ],
)
def test_a_malformed_broker_url_exits_78_with_one_line_quickly(start_worker, url, says):
    worker = start_worker(url, notify=False)
    assert worker.wait(60) == 78, worker.text()
    took = time.monotonic() - worker.started
    lines = [line for line in worker.text().splitlines() if "configuration error" in line]
    assert len(lines) == 1 and says in lines[0], worker.text()
    assert "Traceback" not in worker.text()
    print(f"{url}: exit 78 after {took:.1f}s")
    assert took < 30


def test_pings_stop_while_redis_is_frozen_and_resume_after_the_thaw(broker, start_worker):
    worker = start_worker(broker.url, watchdog=WATCHDOG)
    worker.peer.wait_for("READY", "1", timeout=120)
    time.sleep(WATCHDOG)
    broker.freeze()
    frozen = time.monotonic()
    time.sleep(2 * WATCHDOG)
    late = pings_after(worker, frozen + WATCHDOG / 2 + 2.0)  # one already on its way may land
    broker.thaw()
    thawed = time.monotonic()
    assert late == [], "pinged while the broker was frozen"
    deadline = thawed + 30
    while not pings_after(worker, thawed) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pings_after(worker, thawed), worker.text()[-3000:]
    print(f"pings resumed {pings_after(worker, thawed)[0] - thawed:.1f}s after the thaw")
    assert worker.proc.poll() is None


def test_after_a_redis_restart_the_worker_consumes_again_and_pings_resume(broker, start_worker, tmp_path):
    worker = start_worker(broker.url, watchdog=WATCHDOG)
    worker.peer.wait_for("READY", "1", timeout=120)
    broker.restart()
    restarted = time.monotonic()
    deadline = restarted + 60
    while not pings_after(worker, restarted + 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pings_after(worker, restarted + 1), worker.text()[-3000:]
    print(f"pings resumed {pings_after(worker, restarted + 1)[0] - restarted:.1f}s after the restart")
    # It consumes again: a task sent now runs.
    marker = str(tmp_path / "after-restart")
    client(broker.url).send_task("afsd.sleep", args=[0, marker], queue="default")
    deadline = time.monotonic() + 30
    while not Path(marker + ".done").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Path(marker + ".done").exists(), worker.text()[-3000:]
    assert worker.proc.poll() is None


def test_sigterm_drains_the_running_task_takes_no_new_one_and_leaves_nothing(broker, start_worker, tmp_path):
    # With the log server, a process of its own that must not outlive the worker either.
    worker = start_worker(broker.url, "--concurrency", "1", watchdog=WATCHDOG, serve_logs=True)
    worker.peer.wait_for("READY", "1", timeout=120)
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    app = client(broker.url)
    app.send_task("afsd.sleep", args=[8, first], queue="default")
    deadline = time.monotonic() + 30
    while not Path(first + ".started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Path(first + ".started").exists(), worker.text()[-3000:]
    app.send_task("afsd.sleep", args=[0, second], queue="default")
    worker.descendants()
    os.kill(worker.proc.pid, signal.SIGTERM)
    sent = time.monotonic()
    assert worker.wait(60) == 0, worker.text()[-3000:]
    took = time.monotonic() - sent
    print(f"SIGTERM-to-exit with a running task (8 s task): {took:.1f}s")
    assert Path(first + ".done").exists(), "the running task was not allowed to finish"
    assert not Path(second + ".started").exists(), "a new task was taken after the stop began"
    assert worker.peer.with_field("STOPPING", "1")
    assert alive(worker.known_descendants) == set()
    # The message taken is acknowledged; the one not taken is still queued for another worker.
    r = redis.Redis.from_url(broker.url)
    assert r.hlen("unacked") == 0
    assert r.llen("default") == 1


def test_the_drain_is_bounded_by_stop_timeout_then_exits_0_with_nothing_left(broker, start_worker, tmp_path):
    worker = start_worker(
        broker.url, "--concurrency", "1", "--stop-timeout", "3", watchdog=WATCHDOG, serve_logs=True
    )
    worker.peer.wait_for("READY", "1", timeout=120)
    marker = str(tmp_path / "long")
    client(broker.url).send_task("afsd.sleep", args=[60, marker], queue="default")
    deadline = time.monotonic() + 30
    while not Path(marker + ".started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker.descendants()
    os.kill(worker.proc.pid, signal.SIGTERM)
    sent = time.monotonic()
    assert worker.wait(30) == 0, worker.text()[-3000:]
    took = time.monotonic() - sent
    assert 3 <= took < 10, took
    assert not Path(marker + ".done").exists()
    assert alive(worker.known_descendants) == set()
