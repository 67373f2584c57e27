"""The `airflow-systemd` command."""

from __future__ import annotations

import argparse
import sys

from airflow_systemd import __version__, lifecycle

EXIT_CODES = """\
exit status:
  0   stopped on request (SIGTERM/SIGINT), or Airflow's loop ended by itself (--num-runs)
  1   failed at run time: systemd's Restart=on-failure starts it again
  78  configuration error (EX_CONFIG), named on one line: fix it, then start the unit again;
      the shipped units set RestartPreventExitStatus=78 so this never loops
"""

SCHEDULER_HELP = f"""\
Run `airflow scheduler` as a systemd notify service.

Readiness: READY=1 is sent once the metadata database is reachable, its schema is current
and the first scheduler loop has completed; until then STATUS= says which step it is in
(a database that is down is waited for, with STATUS= saying so).
Watchdog: with WatchdogSec= set, WATCHDOG=1 is sent from inside the scheduler loop, and only
while the last job heartbeat reached the database less than WatchdogSec ago: a hung loop
or a frozen database stops the pings and systemd kills and restarts the service. The kill
(SIGABRT) writes every thread's stack to the journal first.
Exit: any failure ends the process and all its descendants promptly.

All arguments not listed below are passed to `airflow scheduler` (see its --help);
--daemon is refused.

{EXIT_CODES}"""


class _Parser(argparse.ArgumentParser):
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    scheduler = sub.add_parser(
        "scheduler",
        help="run the Airflow scheduler under systemd supervision",
        description=SCHEDULER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scheduler.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="longest graceful stop: then running tasks and helpers are terminated and the "
        "scheduler exits 0; keep it below the unit's TimeoutStopSec= (default: %(default)g)",
    )
    scheduler.set_defaults(func=_run_scheduler)

    try:
        from airflow_systemd import units
    except ImportError:  # pragma: no cover - only while units.py is not there yet
        pass
    else:
        units.register(sub)
    return parser


def _run_scheduler(args: argparse.Namespace, airflow_args: list[str]):
    from airflow_systemd.components import scheduler

    lifecycle.run(
        "airflow-systemd scheduler",
        lambda life: scheduler.main(life, airflow_args),
        stop_timeout=args.stop_timeout,
    )


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "scheduler":
        args.func(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    sys.exit(args.func(args))
