"""Which Airflow versions this release supports, and running Airflow's own CLI.

The one place that knows about Airflow versions; services hold only their hook points.
"""

from __future__ import annotations

import sys

from airflow_systemd.airflow.logging import adopt_airflow_logging
from airflow_systemd.contract import ConfigError

SUPPORTED = "2.10.x, 2.11.x and 3.x"
# Airflow 2.11 has the hook points of 2.10 (perform_heartbeat in every job module,
# SchedulerJobRunner._do_scheduling); 2.9 and older do not.
SUPPORTED_2X = ((2, 10), (2, 11))


def load_airflow() -> str:
    """Import Airflow (which reads its configuration and sets up its engine); return its version.

    Nothing here touches the network, so whatever fails is in the installation or the
    configuration and fails the same way on every restart: a configuration error.
    """
    try:
        import airflow
    except Exception as exc:
        raise ConfigError(f"Airflow could not load its configuration: {type(exc).__name__}: {exc}") from exc
    adopt_airflow_logging()  # importing Airflow has set up its logging

    version = airflow.__version__
    major, minor = (int(part) for part in version.split(".")[:2])
    if not (major == 3 or (major, minor) in SUPPORTED_2X):
        raise ConfigError(f"Airflow {version} is not supported: airflow-systemd supports {SUPPORTED}")
    return version


def require_attributes(owner: object, names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        raise ConfigError(
            f"{what} of this Airflow has no {', '.join(missing)}: airflow-systemd supports {SUPPORTED}"
        )


def validate_arguments(command: str, args: list[str]):
    """Parse ``airflow COMMAND ARGS`` now, so a typo is a config error and not a crash loop."""
    if "-D" in args or "--daemon" in args:
        raise ConfigError(f"do not pass --daemon: systemd supervises `airflow {command}` in the foreground")
    from airflow.cli import cli_parser

    try:
        return cli_parser.get_parser().parse_args([command, *args])
    except SystemExit as exc:  # argparse has printed what is wrong (or --help its help)
        if exc.code:
            raise ConfigError(f"invalid arguments for `airflow {command}`: {' '.join(args)}") from None
        raise


def run_airflow_command(command: str, args: list[str]) -> None:
    """Run ``airflow COMMAND ARGS`` in this process, exactly as the `airflow` script would."""
    from airflow.__main__ import main

    sys.argv = ["airflow", command, *args]
    main()
