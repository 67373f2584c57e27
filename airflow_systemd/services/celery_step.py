"""What proves that a Celery worker works: a bootstep in its consumer's own event loop.

A Celery worker's main process runs its *consumer*: a blueprint of bootsteps (connection,
mingle, events, heart, control, tasks, ...) whose last step, the event loop, receives task
messages and hands them to the pool. :class:`ConsumerWatch` adds one step to that blueprint
(``app.steps['consumer']``), started after the Tasks step, i.e. once the task consumer exists
and the queues are declared and consumed. It schedules a repeating tick on the consumer's
timer; the tick itself is always run by the consumer's loop (``Consumer.call_soon``: the kombu
hub of the prefork pool, or the pending operations of the synchronous loop), never by a side
thread: the default prefork pool's timer is driven by the hub, in the loop; other pools'
timers are threads, which only ask the loop to tick.

Each tick is a time-bounded round trip to the broker (for Redis: a PING, with a socket timeout,
over a connection made with the parameters of the consumer's own channel), then one round for
the :class:`~.probe.Probe`: READY=1 on the first good tick, WATCHDOG=1 only while ticks keep
succeeding. A loop that is blocked (a frozen Redis blocks a publish: kombu sets no socket
timeout by default) does not tick; a loop that turns without a broker fails the round trip:
either way the pings stop. When Celery loses the broker it restarts the consumer's steps
(stop, then start once reconnected): this step's timer is cancelled in ``stop`` and scheduled
again in ``start``, so the ticks resume with the new connection, and never run twice.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from airflow_systemd.lifecycle import log
from airflow_systemd.services.probe import Probe

EVERY_WITHOUT_WATCHDOG = 5.0  # seconds between ticks without WatchdogSec= (STATUS= only)
MAX_ROUND_TRIP = 2.0  # seconds a broker round trip may take, at most


class ConsumerWatch:
    """The ticks' logic, apart from Celery's bootstep machinery (tested without a broker)."""

    def __init__(self, probe: Probe, stopping: Callable[[], bool] = lambda: False) -> None:
        self.probe = probe
        self._stopping = stopping
        interval = probe.interval
        self.every = interval / 4 if interval else EVERY_WITHOUT_WATCHDOG
        self.timeout = min(MAX_ROUND_TRIP, self.every / 2)
        self.ticks = 0
        self.loop_thread: int | None = None  # the thread that ran the last tick
        self._pending = False
        self._redis: tuple[object, object] | None = None  # (channel, its probe connection)

    def consumer_started(self) -> None:
        self._pending = False  # a tick queued in a loop that has ended will not run

    def request_tick(self, consumer) -> None:
        """From the consumer's timer: have the consumer's loop run one tick (at most one queued)."""
        if not self._pending:
            self._pending = True
            consumer.call_soon(self.tick, consumer)

    def tick(self, consumer) -> None:
        self._pending = False
        self.loop_thread = threading.get_ident()
        started = self.probe.now()
        problem = consuming_problem(consumer) or self.broker_problem(consumer)
        now = self.probe.now()
        if problem is None:
            if not self.ticks:
                log.info("first tick of the consumer probe, in thread %s", threading.current_thread().name)
            self.ticks += 1
            self.probe.progressed(now)
            status = describe(consumer) + f" (broker answered in {(now - started) * 1000:.0f} ms)"
            self.probe.round_done(lambda: status, now)
        else:
            if self.probe.ready:
                log.warning("Celery worker not consuming: %s", problem)
            self.probe.failing(f"not consuming: {problem}")

    def broker_problem(self, consumer) -> str | None:
        """A round trip to the broker within ``self.timeout`` seconds: None if it answered."""
        channel = consumer.task_consumer.channel
        pool = getattr(channel, "pool", None)
        if consumer.connection.transport.driver_type != "redis" or pool is None:
            # Other brokers (AMQP): Celery's own AMQP heartbeats, checked in this loop, end a
            # connection the broker no longer answers on; a live connection is the proof here.
            return None
        if self._redis is None or self._redis[0] is not channel:
            self.close_probe_connection()
            self._redis = (channel, redis_probe_connection(pool, self.timeout))
        probe = self._redis[1]
        try:
            probe.send_command("PING")
            probe.read_response()
        except Exception as exc:  # redis-py's errors, OSError, timeouts: all mean "no answer"
            probe.disconnect()
            return f"the broker did not answer a PING within {self.timeout:g}s: {exc}"
        return None

    def close_probe_connection(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                self._redis[1].disconnect()
            self._redis = None

    def consumer_stopped(self) -> None:
        """The consumer's steps stop: a warm shutdown, or Celery reconnecting to the broker."""
        self.close_probe_connection()
        if not self._stopping():
            self.probe.failing("not consuming: the broker connection was lost, Celery is reconnecting")


def consuming_problem(consumer) -> str | None:
    """None when the consumer is running with a live task consumer, else what is wrong."""
    from celery import bootsteps

    if consumer.blueprint.state != bootsteps.RUN or consumer.task_consumer is None:
        return "the consumer is not running"
    connection = consumer.connection
    if connection is None or not connection.connected:
        return "no broker connection"
    return None


def redis_probe_connection(pool, timeout: float):
    """A redis-py connection made with the parameters of the consumer channel's own pool (host,
    db, credentials, TLS) but with socket timeouts: the channel's connections have none, and a
    PING on one of them could block the loop for ever. Kept between ticks; it reconnects itself
    on the next command after an error."""
    kwargs = dict(pool.connection_kwargs, socket_timeout=timeout)
    if "socket_connect_timeout" in kwargs:
        kwargs["socket_connect_timeout"] = timeout
    return pool.connection_class(**kwargs)


def describe(consumer) -> str:
    """``consuming default: 2/4 running``: the queues, tasks running / concurrency."""
    from celery.worker import state

    queues = ",".join(sorted(q.name for q in consumer.task_consumer.queues)) or "no queue"
    concurrency = getattr(consumer.controller, "max_concurrency", None) or consumer.pool.num_processes
    return f"consuming {queues}: {len(state.active_requests)}/{concurrency} running"


def consumer_step(watch: ConsumerWatch):
    """The bootstep class for ``app.steps['consumer'].add(...)``, bound to ``watch``."""
    from celery import bootsteps

    class AirflowSystemdProbe(bootsteps.StartStopStep):
        """Feeds systemd's READY=1/WATCHDOG=1 from the consumer's event loop."""

        label = "airflow-systemd probe"
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, c, **kwargs):
            super().__init__(c, **kwargs)
            self.tref = None

        def start(self, c):
            self.stop_ticks()  # never two timers, whatever Celery calls twice
            watch.consumer_started()
            # A first tick as soon as the loop runs (READY=1 without waiting a period), then
            # one every quarter watchdog interval.
            watch.request_tick(c)
            self.tref = c.timer.call_repeatedly(watch.every, watch.request_tick, (c,))

        def stop(self, c):
            self.stop_ticks()
            watch.consumer_stopped()

        shutdown = stop

        def stop_ticks(self):
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

    return AirflowSystemdProbe
