"""Start-up checks against Airflow's metadata database.

A component waits for its database rather than exiting: a DB outage of any length then costs
one restart, not a restart storm that ends in systemd's start limit. Errors no wait can fix
(bad credentials, missing database, unmigrated schema) become :class:`ConfigError`.
"""

from __future__ import annotations

import logging
import os
import time

from airflow_systemd import journal
from airflow_systemd.airflow.db_errors import PERMANENT_ERRORS, first_line
from airflow_systemd.lifecycle import ConfigError, Lifecycle, log

# libpq reads this: without it a connect to a frozen server waits forever, before the
# watchdog is armed. An explicit setting (or connect_args) still wins.
DEFAULT_CONNECT_TIMEOUT = "10"

# Longest wait between two attempts: also the longest a service takes to notice that its
# database is back (measured in bench/unit_bench.py). A connect attempt is cheap, so this stays
# short; the journal is kept from filling up by logging only some attempts (see logged()).
MAX_BACKOFF = 5.0


def delays():
    """Seconds to wait after each failed attempt: 1, 2, 4, then MAX_BACKOFF for ever."""
    backoff = 1.0
    while True:
        yield backoff
        backoff = min(backoff * 2, MAX_BACKOFF)


def logged(attempt: int) -> bool:
    """Attempts 1, 2, 4, 8, ... go to the journal: a few lines per outage, however long it is.
    STATUS= shows every attempt."""
    return attempt & (attempt - 1) == 0


def set_connect_timeout() -> None:
    os.environ.setdefault("PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)


def wait_until_reachable(life: Lifecycle, sleep=time.sleep) -> None:
    """Block until ``SELECT 1`` succeeds, reporting every attempt to systemd."""
    from airflow import settings
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    for attempt, backoff in enumerate(delays(), start=1):
        try:
            with settings.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            if attempt > 1:
                log.info("metadata database reachable after %d attempts", attempt)
            return
        except OperationalError as exc:
            reason = first_line(exc)
            if PERMANENT_ERRORS.search(reason):
                raise ConfigError(f"metadata database refused us: {reason}") from exc
            loud = logged(attempt)
            life.step(
                f"waiting for the metadata database (attempt {attempt}, retry in {backoff:g}s): {reason}",
                log_it=loud,
            )
            if loud:
                journal.event(
                    journal.DB_UNREACHABLE,
                    f"metadata database unreachable: {reason}",
                    level=logging.WARNING,
                    ATTEMPT=attempt,
                    DB_ERROR=reason,
                )
            sleep(backoff)


def require_current_schema() -> None:
    """Refuse to start on a database that `airflow db migrate` has not brought up to date."""
    from airflow.utils.db import check_migrations

    try:
        check_migrations(timeout=0)  # one look (it sleeps 1 s only when it fails)
    except TimeoutError as exc:
        raise ConfigError(
            "the metadata database schema does not match this Airflow version "
            f"({first_line(exc).split('. ', 1)[-1]}): run `airflow db migrate`"
        ) from exc
