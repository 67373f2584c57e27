"""The Celery worker's proof of work, driven without a broker: Celery's own blueprint and kombu's
own timer, a notify peer in place of systemd, and a consumer that stands in for the parts that
need a broker connection (its queues, its pool size). The broker side runs in
tests/integration/test_celery_worker.py, against a real Redis."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import redis
from celery import Celery, bootsteps
from celery.worker.consumer.consumer import Consumer
from kombu.asynchronous.timer import Timer

from airflow_systemd.contract import ConfigError
from airflow_systemd.lifecycle import Lifecycle
from airflow_systemd.notify import Notifier
from airflow_systemd.services import celery_worker
from airflow_systemd.services.celery_step import ConsumerWatch, consumer_step, describe
from airflow_systemd.services.probe import Probe
from tests.harness.pgcluster import free_port


@pytest.fixture
def life(peer):
    return Lifecycle("airflow-systemd celery-worker", Notifier(), 5.0)


class StandIn:
    """A consumer whose loop is this test: call_soon queues, run_loop() runs what is queued."""

    def __init__(self, driver_type="amqp", pool=None, queues=("default",), concurrency=4):
        self.blueprint = SimpleNamespace(state=bootsteps.RUN)
        channel = SimpleNamespace(pool=pool)
        self.task_consumer = SimpleNamespace(
            queues=[SimpleNamespace(name=q) for q in queues], channel=channel
        )
        self.connection = SimpleNamespace(connected=True, transport=SimpleNamespace(driver_type=driver_type))
        self.pool = SimpleNamespace(num_processes=concurrency)
        self.controller = SimpleNamespace(max_concurrency=None)
        self.timer = Timer()
        self.queued = []

    def call_soon(self, fun, *args):
        self.queued.append((fun, args))

    def run_loop(self):
        while self.queued:
            fun, args = self.queued.pop(0)
            fun(*args)


def settle(peer, key, count=1, timeout=3.0):
    deadline = time.monotonic() + timeout
    while len(peer.with_field(key)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return peer.with_field(key)


def test_the_step_starts_after_the_task_consumer_and_before_the_event_loop():
    app = Celery("t", broker="memory://")
    step = consumer_step(ConsumerWatch(Probe(SimpleNamespace(notifier=SimpleNamespace(watchdog_interval=4)))))
    app.steps["consumer"].add(step)
    blueprint = Consumer.Blueprint(steps=app.steps["consumer"])
    blueprint.steps = blueprint.claim_steps()  # as Blueprint.apply() does, without a consumer
    order = [s.name for s in blueprint._finalize_steps(blueprint.steps)]
    names = [n.rsplit(".", 1)[-1] for n in order]
    assert names.index("Tasks") < names.index(step.__name__) < names.index("Evloop"), names


def test_first_tick_sends_ready_with_the_queues_and_concurrency_then_pings(peer, life):
    watch = ConsumerWatch(Probe(life))
    consumer = StandIn(queues=("default", "gpu"), concurrency=4)
    watch.request_tick(consumer)
    assert not peer.messages  # nothing until the consumer's loop runs the tick
    consumer.run_loop()
    ready = settle(peer, "READY")[0]
    assert ready.fields["STATUS"].startswith("consuming default,gpu: 0/4 running"), ready.fields
    assert settle(peer, "WATCHDOG")
    assert watch.loop_thread == threading.get_ident()  # the thread that ran the loop


def test_at_most_one_tick_is_queued_while_the_loop_does_not_run(life):
    watch = ConsumerWatch(Probe(life))
    consumer = StandIn()
    for _ in range(5):
        watch.request_tick(consumer)
    assert len(consumer.queued) == 1
    consumer.run_loop()
    watch.request_tick(consumer)
    assert len(consumer.queued) == 1


def test_a_broker_that_does_not_answer_stops_the_pings_and_says_why(peer, life):
    watch = ConsumerWatch(Probe(life))
    consumer = StandIn()
    watch.tick(consumer)
    settle(peer, "WATCHDOG")
    # Now a Redis consumer whose broker refuses connections (nothing listens on the port).
    pool = redis.ConnectionPool(host="127.0.0.1", port=free_port(), socket_connect_timeout=None)
    consumer = StandIn(driver_type="redis", pool=pool)
    before = len(peer.with_field("WATCHDOG"))
    started = time.monotonic()
    for _ in range(3):
        watch.tick(consumer)
    assert time.monotonic() - started < 3 * watch.timeout + 1
    statuses = settle(peer, "STATUS", count=2)
    assert statuses[-1].fields["STATUS"].startswith("not consuming: the broker did not answer a PING"), (
        statuses
    )
    assert len(peer.with_field("WATCHDOG")) == before


def test_a_stopped_consumer_is_not_consuming(peer, life):
    watch = ConsumerWatch(Probe(life))
    consumer = StandIn()
    watch.tick(consumer)
    consumer.blueprint.state = bootsteps.CLOSE
    watch.tick(consumer)
    assert settle(peer, "STATUS", 2)[-1].fields["STATUS"] == "not consuming: the consumer is not running"


def live_timers(consumer):
    # call_repeatedly's entry reschedules itself through its tref, which cancel() marks.
    return [s.entry for s in consumer.timer.queue if not (s.entry.canceled or s.entry.tref.canceled)]


def test_a_restarted_consumer_gets_one_timer_and_says_it_is_reconnecting_in_between(peer, life):
    stopping = [False]
    watch = ConsumerWatch(Probe(life), stopping=lambda: stopping[0])
    consumer = StandIn()
    step = consumer_step(watch)(consumer)
    step.start(consumer)
    consumer.run_loop()
    assert len(live_timers(consumer)) == 1
    step.stop(consumer)  # Celery lost the broker: the consumer's steps stop
    assert live_timers(consumer) == []
    status = settle(peer, "STATUS", 2)[-1].fields["STATUS"]
    assert status == "not consuming: the broker connection was lost, Celery is reconnecting"
    step.start(consumer)  # ...and start again once reconnected
    step.start(consumer)  # (twice: still one timer)
    assert len(live_timers(consumer)) == 1
    stopping[0] = True
    step.stop(consumer)  # a warm shutdown: lifecycle's STOPPING status stays
    assert settle(peer, "STATUS", 2)[-1].fields["STATUS"] == status


def test_status_counts_running_tasks_against_the_autoscaler_maximum():
    consumer = StandIn(concurrency=2)
    consumer.controller.max_concurrency = 8
    assert describe(consumer) == "consuming default: 0/8 running"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:notaport/0", "Port could not be cast to integer"),
        ("redis://127.0.0.1:99999/0", "Port out of range"),
        ("nosuchtransport://localhost", "No such transport: nosuchtransport"),
        ("redis//localhost:6379/0", "is not a URL"),
        ("localhost:6379", "is not a URL"),
        ("redis://localhost:6379/queue", "the Redis database must be a number, not 'queue'"),
    ],
)
def test_a_malformed_broker_url_is_a_configuration_error_found_without_the_network(url, says):
    app = Celery("t", broker=url)
    with pytest.raises(ConfigError, match=says):
        celery_worker.broker_connection(app)


def test_a_well_formed_broker_url_passes_with_bounded_socket_timeouts():
    app = Celery("t", broker="redis://:secret@127.0.0.1:6390/2")
    conn = celery_worker.broker_connection(app, timeout=3.0)
    assert conn.transport_options["socket_timeout"] == 3.0
    assert conn.connect_timeout == 3.0
    assert "secret" not in celery_worker.shown(conn)
    assert celery_worker.shown(Celery("t", broker="redis://127.0.0.1:6390/2").connection_for_read()) == (
        "redis://127.0.0.1:6390/2"
    )


def test_a_broker_that_is_down_is_waited_for_with_every_attempt_in_status(peer, life):
    app = Celery("t", broker=f"redis://127.0.0.1:{free_port()}/0")
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt  # enough: it would wait for ever

    with pytest.raises(KeyboardInterrupt):
        celery_worker.wait_for_broker(life, app, sleep=sleep)
    assert sleeps == [1, 2, 4]
    statuses = [m.fields["STATUS"] for m in settle(peer, "STATUS", 3)]
    assert statuses[0].startswith("waiting for the broker redis://127.0.0.1:")
    assert "(attempt 3, retry in 4s)" in statuses[2] and "Connection refused" in statuses[2]
