"""A Celery worker (Airflow 3.3 with the CeleryExecutor): `airflow celery worker`.

Airflow's own command runs in this process, as for every service; what is Celery's own here:

* before it starts, what a restart cannot fix is refused (exit 78): an Airflow without Celery
  workers (2.x), a missing or broken Celery provider, a broker URL that does not parse;
* a broker that is down is waited for at start, like the metadata database (STATUS= says so);
  once running, Celery reconnects by itself;
* the proof of work is a bootstep in the consumer's event loop (:mod:`.celery_step`), added to
  the app from ``celeryd_init``, so whatever app the command builds gets it;
* SIGTERM is Celery's warm shutdown (stop consuming at once, let running tasks finish):
  lifecycle wraps Celery's handler, so systemd hears STOPPING=1 and the drain is bounded by
  ``--stop-timeout``, after which lifecycle ends what is left and exits 0;
* Airflow ignores the worker's exit code (an unrecoverable error, Celery giving up on the
  broker): it is read from the worker itself, so such an end is a failure (exit 1).
"""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass

from airflow_systemd.airflow import database, startup, support
from airflow_systemd.contract import ConfigError
from airflow_systemd.lifecycle import Lifecycle, log
from airflow_systemd.services.celery_step import ConsumerWatch, consumer_step
from airflow_systemd.services.probe import Probe

PROVIDER = "apache-airflow-providers-celery"
# Broker errors a wait cannot fix: wrong credentials (Redis and AMQP wording).
PERMANENT_ERRORS = re.compile(
    r"WRONGPASS|NOAUTH|invalid password|invalid username-password|ACCESS_REFUSED|authentication",
    re.IGNORECASE,
)
CONNECT_TIMEOUT = 5.0  # seconds, per attempt to reach the broker at start


@dataclass(frozen=True)
class CeleryWorkerService:
    command: tuple[str, ...]  # the `airflow` subcommand
    title: str


SERVICE = CeleryWorkerService(command=("celery", "worker"), title="Celery worker")


class CeleryWorkerFailed(RuntimeError):
    """The Celery worker ended by itself with a non-zero exit code."""


def require_celery_support(version: str) -> None:
    """Airflow 3.3 or later, and its Celery provider importable."""
    major, minor = (int(part) for part in version.split(".")[:2])
    if (major, minor) < (3, 3):
        raise ConfigError(f"Celery workers need Airflow 3.3 or later: this is Airflow {version}")
    try:
        import airflow.providers.celery.executors.celery_executor  # noqa: F401  (builds the app)
    except ModuleNotFoundError as exc:
        if exc.name and "celery" in exc.name:
            raise ConfigError(f"{PROVIDER} is not installed: install it to run Celery workers") from None
        raise ConfigError(f"the Celery provider cannot be imported: {type(exc).__name__}: {exc}") from exc
    except ImportError as exc:  # e.g. a Celery the provider does not support
        raise ConfigError(f"the Celery provider cannot be imported: {type(exc).__name__}: {exc}") from exc


def broker_connection(app, timeout: float = CONNECT_TIMEOUT):
    """The worker's broker connection (not connected yet), or ConfigError if its URL is malformed.

    Nothing here touches the network: kombu parses the URL and resolves its transport.
    """
    url = app.conf.broker_read_url or app.conf.broker_url or ""
    if "://" not in url:
        # kombu would take it for the host name of an AMQP broker on localhost.
        raise ConfigError("[celery] broker_url is not a URL (expected e.g. redis://localhost:6379/0)")
    try:
        conn = app.connection_for_read(connect_timeout=timeout)
        transport = conn.transport
    except KeyError as exc:  # kombu: "No such transport: ..."
        raise ConfigError(f"[celery] broker_url is malformed: {exc.args[0]}") from None
    except ValueError as exc:  # a port that is not a number
        raise ConfigError(f"[celery] broker_url is malformed: {exc}") from None
    except ImportError as exc:
        raise ConfigError(f"[celery] broker_url needs a library that is missing: {exc}") from None
    if transport.driver_type == "redis":
        db = (conn.virtual_host or "").strip("/")
        if db and not db.isdigit():
            raise ConfigError(
                f"[celery] broker_url is malformed: the Redis database must be a number, not {db!r}"
            )
        conn.close()
        # Bounded: a frozen Redis accepts the connection and never answers.
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        conn = app.connection_for_read(connect_timeout=timeout, transport_options=options)
    return conn


def shown(conn) -> str:
    """The broker's URL for humans: the password masked, and no mask where there is none."""
    return conn.as_uri(include_password=not conn.password)


def wait_for_broker(life: Lifecycle, app, sleep=time.sleep) -> None:
    """Block until the broker accepts a connection, reporting every attempt to systemd."""
    for attempt, backoff in enumerate(database.delays(), start=1):
        conn = broker_connection(app)
        try:
            conn.ensure_connection(max_retries=0)  # one try: connect() sleeps 2 s and tries again
            if attempt > 1:
                log.info("broker %s reachable after %d attempts", shown(conn), attempt)
            return
        except Exception as exc:  # kombu/redis-py/amqp errors and OSError: all say "not now"
            reason = _first_line(exc)
            if PERMANENT_ERRORS.search(reason):
                raise ConfigError(f"the broker {shown(conn)} refused us: {reason}") from exc
            loud = database.logged(attempt)
            life.step(
                f"waiting for the broker {shown(conn)} (attempt {attempt}, retry in {backoff:g}s): {reason}",
                log_it=loud,
            )
            sleep(backoff)
        finally:
            conn.release()


def run(life: Lifecycle, service: CeleryWorkerService, airflow_args: list[str]) -> None:
    command, *subcommand = service.command
    args = [*subcommand, *airflow_args]
    startup.prepare(life, command, args, requirements=require_celery_support)
    from airflow.providers.celery.executors.celery_executor import app
    from celery import signals

    life.step("connecting to the broker")
    wait_for_broker(life, app)
    watch = ConsumerWatch(Probe(life), stopping=lambda: life.stopping)
    step = consumer_step(watch)
    workers = []

    def add_probe(sender=None, instance=None, **kwargs):
        # celeryd_init: the worker is being built, its consumer blueprint not yet.
        workers.append(instance)
        if step not in instance.app.steps["consumer"]:
            instance.app.steps["consumer"].add(step)

    def ignore_sighup(sender=None, **kwargs):
        # worker_ready: Celery has installed its signal handlers. Its SIGHUP handler re-executes
        # the worker from an atexit hook, which this process never runs (it leaves with
        # os._exit): a SIGHUP would end the worker and the unit. There is no reload: say so.
        signal.signal(signal.SIGHUP, _sighup_ignored)

    signals.celeryd_init.connect(add_probe, weak=False)
    signals.worker_ready.connect(ignore_sighup, weak=False)
    life.step(f"starting the {service.title}")
    support.run_airflow_command(command, args)
    exitcode = workers[-1].exitcode if workers else None
    if exitcode and not life.stopping:
        raise CeleryWorkerFailed(f"the Celery worker stopped with exit code {exitcode} (see the log above)")


def _sighup_ignored(signum, frame) -> None:
    log.warning("SIGHUP ignored: a Celery worker has no reload; restart the unit to apply changes")


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
