"""The `airflow-systemd` command.

One calling convention for every subcommand: a module that owns subcommands exposes
``register(subparsers)`` and sets ``func=handler``; ``handler(args: argparse.Namespace) -> int``
returns the exit status. The commands that run an Airflow command (the services and db-migrate)
declare ``airflow_args``: the arguments this parser does not know are passed on to Airflow in
it. Every other command refuses unknown arguments (exit 78, see :class:`_Parser`).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from airflow_systemd import __version__, lifecycle
from airflow_systemd.alert import command as alert

EXIT_CODES = """\
exit status:
  0   stopped on request (SIGTERM/SIGINT), or Airflow's loop ended by itself (--num-runs)
  1   failed at run time: systemd's Restart=on-failure starts it again
  78  configuration error (EX_CONFIG), named on one line: fix it, then start the unit again;
      the shipped units set RestartPreventExitStatus=78 so this never loops
"""

COMPONENT_HELP = f"""\
Run `airflow {{airflow}}` as a systemd notify service.

Readiness: READY=1 is sent once the metadata database is reachable, its schema is current
and {{ready}}; until then STATUS= says which step it is in (a database that is down is
waited for, with STATUS= saying so).

Watchdog: with WatchdogSec= set, WATCHDOG=1 is sent only while {{alive}}: a hang stops the
pings, and systemd kills and restarts the service. The kill (SIGABRT) writes every thread's
stack to the journal first.

Exit: any failure ends the process and all its descendants promptly.

All arguments not listed below are passed to `airflow {{airflow}}` (see its --help);
--daemon is refused.

{EXIT_CODES}"""

# Each kind of component: the module in airflow_systemd.services whose run() runs it, and what
# its help says about READY=1 and WATCHDOG=1.
JOB_LOOP = dict(
    runner="job",
    ready="the first loop iteration has completed",
    alive="the loop is iterating and its last job heartbeat reached the database less than WatchdogSec ago",
)
HTTP_SERVER = dict(
    runner="http",
    ready="the health endpoint answers",
    alive="the health endpoint answers, checked over HTTP every few seconds",
)
CELERY_WORKER = dict(
    runner="celery_worker",
    ready="the worker is connected to the broker and consuming its queues (first tick of a "
    "bootstep in the consumer's event loop)",
    alive="the consumer's event loop keeps ticking and the broker answers each tick's PING "
    "within its timeout",
)
# command -> (module in airflow_systemd.services, kind, one-line help)
COMPONENTS = {
    "scheduler": ("scheduler", JOB_LOOP, "the scheduler"),
    "dag-processor": ("dag_processor", JOB_LOOP, "the DAG processor (Airflow 3; optional in 2.10)"),
    "triggerer": ("triggerer", JOB_LOOP, "the triggerer"),
    "api-server": ("api_server", HTTP_SERVER, "the API server (Airflow 3)"),
    "webserver": ("webserver", HTTP_SERVER, "the webserver (Airflow 2.10)"),
    "celery-worker": ("celery_worker", CELERY_WORKER, "a Celery worker (Airflow 3.3, CeleryExecutor)"),
}
# The longest graceful stop, by command. A Celery worker drains: it lets its running tasks
# finish, and Airflow's tasks often run for long (the unit's TimeoutStopSec= is above this).
STOP_TIMEOUT = {"celery-worker": 3600.0}
# The Airflow command a component runs, where it is not the component's name.
AIRFLOW_COMMAND = {"celery-worker": "celery worker"}
DEFAULT_STOP_TIMEOUT = 20.0


def _filled(text: str) -> str:
    """Re-wrap the prose paragraphs (not the exit-status table) to 88 columns."""
    prose, _, table = text.partition("exit status:")
    paragraphs = [textwrap.fill(" ".join(p.split()), 88) for p in prose.strip().split("\n\n")]
    return "\n\n".join(paragraphs) + "\n\nexit status:" + table


class _Parser(argparse.ArgumentParser):
    """Every subcommand's parser: its description is laid out by hand (paragraphs, tables),
    and a usage error is a configuration error."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        # A wrong ExecStart= line is a configuration error: exit 78, which the units do not
        # restart, instead of argparse's 2, which Restart=on-failure would retry forever.
        self.print_usage(sys.stderr)
        self.exit(lifecycle.EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="airflow-systemd",
        description="Apache Airflow components as systemd services.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    for command, (_, kind, what) in COMPONENTS.items():
        component = sub.add_parser(
            command,
            help=f"run {what} under systemd supervision",
            description=_filled(COMPONENT_HELP.format(airflow=AIRFLOW_COMMAND.get(command, command), **kind)),
        )
        component.add_argument(
            "--stop-timeout",
            type=float,
            default=STOP_TIMEOUT.get(command, DEFAULT_STOP_TIMEOUT),
            metavar="SECONDS",
            help="longest graceful stop: then what is still running (tasks, helpers) is "
            "terminated and the service exits 0; keep it below the unit's TimeoutStopSec= "
            "(default: %(default)g)",
        )
        component.set_defaults(func=_run_component, airflow_args=[])

    _add_oneshots(sub)
    from airflow_systemd import join, secrets_file
    from airflow_systemd.install import command as units
    from airflow_systemd.install import role

    secrets_file.register(sub)
    units.register(sub)
    alert.register(sub)
    role.register(sub)
    join.register(sub)
    return parser


def _add_oneshots(sub) -> None:
    migrate = sub.add_parser(
        "db-migrate",
        help="`airflow db migrate`, waiting for the database first (airflow-db-migrate.service)",
        description="Run `airflow db migrate` (extra arguments are passed on), after waiting for\n"
        "the metadata database like the services do.",
    )
    migrate.set_defaults(func=_run_oneshot, oneshot="db_migrate", airflow_args=[])
    for name, what, variable in (
        (
            "db-clean",
            "delete metadata (DAG runs, task instances, logs tables) older than",
            "AIRFLOW_SYSTEMD_DB_RETENTION_DAYS",
        ),
        ("log-clean", "delete task log files older than", "AIRFLOW_SYSTEMD_LOG_RETENTION_DAYS"),
    ):
        default = int(os.environ.get(variable, "90"))
        parser = sub.add_parser(name, help=f"{what} the retention (timer: airflow-{name}.timer)")
        parser.add_argument(
            "--retention-days",
            type=int,
            default=default,
            metavar="DAYS",
            help=f"keep this many days (default: ${variable}, else 90; now {default})",
        )
        parser.set_defaults(func=_run_oneshot, oneshot=name.replace("-", "_"))


def _run_oneshot(args: argparse.Namespace) -> int:
    from airflow_systemd.services import oneshot

    action = getattr(oneshot, args.oneshot)
    if args.oneshot == "db_migrate":
        main = lambda life: action(life, args.airflow_args)  # noqa: E731
    else:
        main = lambda life: action(life, args.retention_days)  # noqa: E731
    # lifecycle.run ends the process itself (os._exit, once every descendant is gone) with the
    # exit status of the contract: it never returns.
    return lifecycle.run(args.command, main, stop_timeout=20.0)


def _run_component(args: argparse.Namespace) -> int:
    import importlib

    module_name, kind, _ = COMPONENTS[args.command]
    service = importlib.import_module(f"airflow_systemd.services.{module_name}").SERVICE
    runner = importlib.import_module(f"airflow_systemd.services.{kind['runner']}").run
    return lifecycle.run(
        args.command,
        lambda life: runner(life, service, args.airflow_args),
        stop_timeout=args.stop_timeout,
    )


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "airflow_args"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.airflow_args = extra
    sys.exit(args.func(args))
