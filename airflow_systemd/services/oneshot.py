"""One-off Airflow commands run by systemd: migrating the schema, housekeeping.

They share the services' start-up (the database is waited for, not failed on: at boot
PostgreSQL may come up after us) and the exit contract; they have no loop to watch.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from airflow_systemd.airflow import startup, support
from airflow_systemd.lifecycle import Lifecycle, log


def db_migrate(life: Lifecycle, airflow_args: list[str]) -> None:
    """`airflow db migrate`: a no-op (a few seconds) when the schema is current."""
    args = ["migrate", *airflow_args]
    startup.prepare(life, "db", args, check_schema=False)
    life.step("migrating the metadata database")
    support.run_airflow_command("db", args)
    # A oneshot stays "active (exited)": without this, `systemctl status` would keep
    # showing the step it was in.
    life.notifier.send("STATUS=the metadata database schema is current")


def db_clean(life: Lifecycle, retention_days: int) -> None:
    """`airflow db clean` of everything older than the retention, without archive tables."""
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=retention_days)
    args = ["clean", "--clean-before-timestamp", before.isoformat(), "--skip-archive", "--yes"]
    startup.prepare(life, "db", args)
    life.step(f"deleting metadata older than {retention_days} days")
    support.run_airflow_command("db", args)


def log_clean(life: Lifecycle, retention_days: int) -> None:
    """Delete task log files older than the retention, then the directories left empty."""
    life.step("loading Airflow")
    support.load_airflow()
    from airflow.configuration import conf

    root = Path(conf.get("logging", "base_log_folder"))
    cutoff = time.time() - retention_days * 86400
    removed = 0
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(directory, name)
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        if Path(directory) != root and not any(Path(directory).iterdir()):
            Path(directory).rmdir()
    log.info("removed %d task log file(s) older than %d days from %s", removed, retention_days, root)
