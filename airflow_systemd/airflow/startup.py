"""The start-up steps every component goes through before Airflow's own command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from airflow_systemd.airflow import database, support
from airflow_systemd.lifecycle import Lifecycle


def prepare(
    life: Lifecycle,
    command: str,
    airflow_args: list[str],
    *,
    check_schema: bool = True,
    requirements: Callable[[str], None] | None = None,
) -> argparse.Namespace:
    """Load Airflow, check the arguments, wait for the database, check its schema.

    ``requirements(version)``, if given, runs once Airflow is loaded and before its arguments
    are parsed: what a component needs beyond the supported versions (e.g. a provider).
    Returns the parsed `airflow COMMAND` arguments.
    """
    life.step("loading Airflow")
    database.set_connect_timeout()
    version = support.load_airflow()
    if requirements is not None:
        requirements(version)
    parsed = support.validate_arguments(command, airflow_args)
    life.step("connecting to the metadata database")
    database.wait_until_reachable(life)
    if check_schema:
        life.step("checking the metadata database schema")
        database.require_current_schema()
    return parsed
