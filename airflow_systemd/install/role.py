"""`airflow-systemd role`: which Airflow services this host runs.

A role is a set of enabled Airflow units, nothing more: the command enables (and starts) the
units its roles need and disables (and stops) every other Airflow service, Celery worker
instances included, so that nothing a role does not need runs, and a host's role survives
reboots and package upgrades (deb-systemd-helper leaves a unit the administrator disabled
disabled). Roles combine, the command can be re-run, and ``role all-in-one`` (what
``apt install`` sets up) undoes any other.

:func:`plan` decides, from the roles alone (and the worker units found on the host);
:func:`commands` lists what carries a plan out, :func:`run` runs each step.
The control role's one file, a drop-in that makes the API server listen on every address, is
written by the control role and removed by every other.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.metadata
import os
import re
import subprocess
import sys

from airflow_systemd.contract import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError
from airflow_systemd.install import files
from airflow_systemd.install.command import DEFAULT_UNIT_DIR, SERVICES_BY_MAJOR

ALL_IN_ONE = tuple(f"{name}.service" for name in SERVICES_BY_MAJOR["3"])
SCHEDULER, DAG_PROCESSOR, TRIGGERER, API_SERVER = ALL_IN_ONE
TARGET = "airflow.target"
WORKER_PREFIX = "airflow-celery-worker@"
# What each role runs (the worker role: one airflow-celery-worker@QUEUE.service per --queue).
ROLES = {
    "all-in-one": ALL_IN_ONE,
    "control": ALL_IN_ONE,
    "scheduler": (SCHEDULER, TRIGGERER),
    "worker": (),
}
DEFAULT_QUEUE = "default"
# A Celery queue as a unit's instance name: what needs no systemd-escape, nor shell quoting.
_QUEUE = re.compile(r"[A-Za-z0-9_.-]+")
_WORKER = re.compile(rf"{re.escape(WORKER_PREFIX)}[A-Za-z0-9_.\\:-]+\.service")

DROP_IN = f"{API_SERVER}.d/role-control.conf"
DROP_IN_TEXT = """\
# Written by `airflow-systemd role control`, removed by any other role: the
# workers and schedulers of other hosts reach this API server (their tasks use
# its execution API), so it listens on every address rather than on loopback.
# A firewall or a TLS proxy decides who may connect. AIRFLOW__API__HOST in
# /etc/default/airflow (an EnvironmentFile=) still wins over this.
[Service]
Environment=AIRFLOW__API__HOST=0.0.0.0
"""


@dataclasses.dataclass(frozen=True)
class Plan:
    enable: tuple[str, ...]  # enabled (and started), airflow.target first
    disable: tuple[str, ...]  # disabled (and stopped)
    listen_everywhere: bool  # the control role's drop-in: written, else removed


def plan(roles: list[str], queues: list[str], major: str, instances: tuple[str, ...] = ()) -> Plan:
    """What the roles need, for an Airflow of this major version; ``instances``: the Celery
    worker units found on the host, each disabled unless a --queue names it.

    Raises ConfigError for what cannot be done (nothing has been changed then).
    """
    for role in roles:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: choose from {', '.join(ROLES)}")
    if queues and "worker" not in roles:
        raise ConfigError("--queue is for the worker role only")
    for queue in queues:
        if not _QUEUE.fullmatch(queue):
            raise ConfigError(f"--queue {queue!r}: letters, digits, '_', '.' and '-' only")
    if major != "3":
        raise ConfigError(
            f"roles need Airflow 3 (this is Airflow {major}, which gets no new features): "
            "enable its units with systemctl"
        )
    workers = [f"{WORKER_PREFIX}{q}.service" for q in dict.fromkeys(queues or [DEFAULT_QUEUE])]
    wanted = {unit for role in roles for unit in ROLES[role]}
    enable = [TARGET, *(unit for unit in ALL_IN_ONE if unit in wanted)]
    if "worker" in roles:
        enable += workers
    disable = [unit for unit in (*ALL_IN_ONE, *sorted(set(instances))) if unit not in enable]
    return Plan(tuple(enable), tuple(disable), "control" in roles)


# --- carrying a plan out --------------------------------------------------------------------


def worker_instances(unit_dir: str) -> tuple[str, ...]:
    """The Celery worker instances loaded (running, failed) or enabled (a link in a .wants/)."""
    try:
        loaded = subprocess.run(
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", f"{WORKER_PREFIX}*.service"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:  # no systemctl: nothing is loaded
        loaded = ""
    linked = [os.path.basename(p) for p in glob.glob(os.path.join(unit_dir, "*.wants", f"{WORKER_PREFIX}?*"))]
    # Names only, each matched in full: what reaches systemctl's command line is a unit name.
    names = [line.split()[0] for line in loaded.splitlines() if line.strip()] + linked
    return tuple(sorted({name for name in names if _WORKER.fullmatch(name)}))


def drop_in_change(unit_dir: str, listen_everywhere: bool) -> str | None:
    """'write', 'remove', or None when the drop-in already is as the plan wants."""
    path = os.path.join(unit_dir, DROP_IN)
    try:
        with open(path, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    if listen_everywhere:
        return None if current == DROP_IN_TEXT else "write"
    return None if current is None else "remove"


def commands(p: Plan, change: str | None, unit_dir: str, start: bool) -> list[list[str]]:
    """The plan as the commands that carry it out, in order: stop first, so that a change of
    role never runs more than either role; the API server restarted when the drop-in changed."""
    now = ["--now"] if start else []
    steps = []
    if p.disable:
        steps.append(["systemctl", "disable", *now, *p.disable])
    if change:
        path = os.path.join(unit_dir, DROP_IN)
        steps.append(["write", path] if change == "write" else ["remove", path])
        steps.append(["systemctl", "daemon-reload"])
        if start and API_SERVER in p.enable:
            steps.append(["systemctl", "try-restart", API_SERVER])  # if running: the new address
    steps.append(["systemctl", "enable", *now, *p.enable])
    return steps


def run(step: list[str]) -> None:
    if step[0] == "write":
        os.makedirs(os.path.dirname(step[1]), mode=0o755, exist_ok=True)
        files.write(step[1], DROP_IN_TEXT, 0o644)
    elif step[0] == "remove":
        os.unlink(step[1])
    else:
        files.systemctl(*step[1:])


def airflow_major() -> str:
    try:
        return importlib.metadata.version("apache-airflow").split(".")[0]
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError("Airflow is not installed beside airflow-systemd") from None


def _command(args: argparse.Namespace) -> int:
    # As root: it writes into /etc/systemd/system and enables, starts and stops system units.
    # What it runs is fixed here; what it reads from the host (unit names in systemctl's
    # output and in .wants/ links) is matched against a strict pattern before it is used.
    try:
        if os.geteuid() != 0 and not args.dry_run:
            raise ConfigError("run it as root: it writes /etc/systemd/system and calls systemctl")
        instances = worker_instances(DEFAULT_UNIT_DIR)
        p = plan(args.roles, args.queue or [], airflow_major(), instances)
    except ConfigError as exc:
        print(f"airflow-systemd role: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        change = drop_in_change(DEFAULT_UNIT_DIR, p.listen_everywhere)
        steps = commands(p, change, DEFAULT_UNIT_DIR, start=not args.no_start)
        if args.dry_run:
            print("\n".join(" ".join(step) for step in steps))
            return EXIT_OK
        for step in steps:
            print(" ".join(step), file=sys.stderr)
            run(step)
    except (OSError, RuntimeError) as exc:
        print(f"airflow-systemd role: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


HELP = f"""\
Choose what this host runs. A role is a set of enabled Airflow units: the units the roles
need are enabled and started, every other Airflow service (Celery worker instances included)
is disabled and stopped. Roles combine; run it again to change them. Run it as root.

roles:
  all-in-one  scheduler, dag-processor, triggerer, api-server (airflow-NAME.service): one
              host runs everything, as after apt install
  control     the same, and the API server listens on every address (0.0.0.0) instead of
              loopback only, as workers on other hosts reach its execution API; a drop-in,
              {DEFAULT_UNIT_DIR}/{DROP_IN},
              which every other role removes
  scheduler   scheduler, triggerer: a second scheduler host, active-active with the first
              (Airflow's schedulers share the work through row locks in PostgreSQL)
  worker      {WORKER_PREFIX}QUEUE.service for each --queue (default: {DEFAULT_QUEUE}), for
              the CeleryExecutor

A Celery worker that is stopped lets its running tasks finish first (up to an hour, see
{WORKER_PREFIX}.service). Airflow 3 only.

examples:
  airflow-systemd role control                   # host A: the API server for the others
  airflow-systemd role worker scheduler          # host B: a worker and a second scheduler
  airflow-systemd role worker --queue default --queue gpu
  airflow-systemd role all-in-one                # back to everything on one host
  airflow-systemd role scheduler --dry-run       # print the commands, change nothing

exit status:
  0   done
  1   a systemctl call (or writing the drop-in) failed: run it again once fixed
  78  refused, nothing changed: an unknown role, a bad --queue, Airflow 2, or not root
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "role",
        help="choose what this host runs: all-in-one, control, scheduler, worker (as root)",
        description=HELP,
    )
    parser.add_argument("roles", nargs="+", metavar="ROLE", help=f"one or more of: {', '.join(ROLES)}")
    parser.add_argument(
        "--queue",
        action="append",
        metavar="Q",
        help=f"the worker role's Celery queue, one worker unit each; repeatable (default: {DEFAULT_QUEUE})",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, change nothing")
    parser.add_argument("--no-start", action="store_true", help="enable and disable, start and stop nothing")
    parser.set_defaults(func=_command)
