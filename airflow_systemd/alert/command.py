"""The ``alert`` subcommand: one run of it, from how it was started to the alert sent.

How it is started (see the package's docstring) decides what it does: after a run of the
unit (:func:`parse_instance` reads how it ended), after the unit failed for good (OnFailure=,
$MONITOR_SERVICE_RESULT & co), or by hand. It exits 0 whatever happens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Mapping

from airflow_systemd import journal
from airflow_systemd.alert import history, incident
from airflow_systemd.alert.channels import deliver
from airflow_systemd.alert.config import ConfigProblem, Settings, load_config
from airflow_systemd.alert.payload import build_payload, incident_payload, resolved_payload
from airflow_systemd.alert.systemd import Systemd, current_stop, evidence, will_restart
from airflow_systemd.contract import ALERT_CONFIG as DEFAULT_CONFIG
from airflow_systemd.contract import ALERT_STATE_DIR as STATE_DIR
from airflow_systemd.last_run import Stop

log = logging.getLogger("airflow_systemd")


def unit_name(name: str) -> str:
    """The full name: airflow-scheduler -> airflow-scheduler.service, as systemctl reads it."""
    return (
        name
        if re.search(r"\.(service|socket|timer|target|mount|path|scope|slice)$", name)
        else f"{name}.service"
    )


def parse_instance(instance: str) -> tuple[str, dict[str, str]]:
    """The unit, and how its run ended, from ``airflow-alert@``'s instance name.

    ``UNIT:RESULT:EXIT_CODE:EXIT_STATUS:INVOCATION_ID`` (what each unit's ExecStopPost= asks
    for, systemd filling in the variables of systemd.exec(5)) gives those as the variables an
    ExecStopPost= would see; a bare ``UNIT`` (OnFailure=, or by hand) gives none;
    ``UNIT:started`` (the unit's ExecStartPost=, once it is READY) gives ``STARTED``.
    """
    name, *ended = instance.split(":")
    if not ended:
        return unit_name(name), {}
    if ended == ["started"]:  # the unit's ExecStartPost=: it is active again
        return unit_name(name), {"STARTED": "1"}
    if len(ended) != 4 or not ended[0]:
        raise ValueError(f"{instance!r}: expected UNIT or UNIT:RESULT:EXIT_CODE:EXIT_STATUS:INVOCATION_ID")
    keys = ("SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS", "INVOCATION_ID")
    return unit_name(name), dict(zip(keys, ended))


def _monitor_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """What systemd gives an OnFailure= unit; an after-run alert comes by its instance name."""
    return {key: value for key, value in environ.items() if key.startswith("MONITOR_")}


@dataclasses.dataclass(frozen=True)
class AlertRun:
    """One run of the command: about which unit, with which settings, asking which systemd,
    keeping its state where, at what time, and whether for real (``dry_run``: record nothing)."""

    unit: str
    settings: Settings
    systemd: Systemd
    state_dir: str
    now: float
    dry_run: bool = False

    def payload(self, stop: Stop, kind: str, held_back: int) -> dict:
        found = evidence(self.systemd.journal(self.unit), stop.invocation_id, self.settings.error_lines)
        return build_payload(self.unit, stop, kind, found, held_back, self.now, socket.gethostname())


def alert(
    unit: str,
    environ: Mapping[str, str],
    settings: Settings,
    *,
    systemd: Systemd | None = None,
    state_dir: str = STATE_DIR,
    now: float | None = None,
    dry_run: bool = False,
) -> dict | None:
    """Handle one run of the command; returns the payload if there is one to deliver."""
    now = time.time() if now is None else now
    run = AlertRun(unit, settings, systemd or Systemd(), state_dir, now, dry_run)
    if "STARTED" in environ:
        return None if dry_run else _started(run)
    if "SERVICE_RESULT" in environ:
        return _after_run(run, Stop.from_environ(environ))
    if "MONITOR_SERVICE_RESULT" in environ:
        return _unit_failed(run, Stop.from_environ(environ, "MONITOR_"))
    return run.payload(current_stop(run.systemd, unit), "status", 0)


def _after_run(run: AlertRun, ended: Stop) -> dict | None:
    """ExecStopPost=: record how the run ended; alert a failure: one systemd restarts as part of
    an incident (or, with ``incident_window = 0``, within the unit's rate limit), one it does
    not restart always."""
    if ended.result == "success":
        restarts = False
    else:
        props = run.systemd.show(run.unit, "Restart", "RestartPreventExitStatus", "RestartForceExitStatus")
        # Not knowing, expect a restart: if none comes, the OnFailure= alert still goes out.
        restarts = will_restart(ended.result, ended.exit_code, ended.exit_status, props) if props else True
    stop = dataclasses.replace(ended, time=run.now, restarts=restarts)
    kind = "failed" if restarts else "down"
    if run.dry_run:
        return None if stop.result == "success" else run.payload(stop, kind, 0)
    with history.locked_state(run.unit, run.state_dir) as state:
        previous = history.last_stop(state)
        if previous is not None and not previous.this_boot():
            previous = None
        state["last_stop"] = stop.record()
        if stop.result == "success":
            return None
        if not restarts and history.alerted_final(state, stop, run.unit):
            return None
        grouped = restarts and run.settings.incident_window > 0  # then not rate-limited per unit
        if not grouped:
            held_back = history.admit(state, previous, run.now, run.settings, final=not restarts)
        if not restarts:
            history.mark_final(state, stop)
    if grouped:
        return _incident(run, stop)
    if not restarts:
        with history.locked_incidents(run.state_dir) as book:
            incident.record_down(book, run.unit, run.now)
    if held_back is None:
        log.info(
            "alert for %s held back: %d alerts in the last %gs (max_alerts)",
            run.unit,
            run.settings.max_alerts,
            run.settings.window,
        )
        return None
    return run.payload(stop, kind, held_back)


def _incident(run: AlertRun, stop: Stop) -> dict | None:
    """A failure systemd restarts, with incidents on: alerted only if it opens an incident, and
    then after ``incident_wait``, naming every unit that failed with the same cause by then."""
    entries = run.systemd.journal(run.unit)
    cause, words = incident.cause_of(entries, stop)
    with history.locked_incidents(run.state_dir) as book:
        opened, new = incident.record_failure(
            book, run.unit, cause, words, stop, run.now, run.settings.incident_window
        )
    if not new:
        since = time.strftime("%H:%M:%S UTC", time.gmtime(opened["opened"]))
        log.info("alert for %s: part of the incident opened at %s: %s", run.unit, since, words)
        return None
    if run.settings.channels:  # (none: nothing to send, nothing to wait for)
        time.sleep(run.settings.incident_wait)  # the other units' failures, started at once, join
    with history.locked_incidents(run.state_dir) as book:
        taken = incident.take(book, opened["id"])
    found = evidence(entries, stop.invocation_id, run.settings.error_lines)
    first = build_payload(run.unit, stop, "failed", found, 0, run.now, socket.gethostname())
    return incident_payload(first, taken or opened, socket.gethostname())


def _started(run: AlertRun) -> dict | None:
    """ExecStartPost=: the unit is active again; alert the incidents this resolves."""
    with history.locked_incidents(run.state_dir) as book:
        resolved = incident.record_started(book, run.unit, run.now)
    if not resolved:
        return None
    return resolved_payload(run.unit, resolved, run.now, socket.gethostname())


def _unit_failed(run: AlertRun, stop: Stop) -> dict | None:
    """OnFailure=: the unit stays failed; always alerted, once per run."""
    if stop.result == "success":  # an OnSuccess= hook, say
        return None
    if run.dry_run:
        return run.payload(stop, "down", 0)
    with history.locked_state(run.unit, run.state_dir) as state:
        if history.alerted_final(state, stop, run.unit):
            return None
        history.mark_final(state, stop)
        held_back = history.admit(state, history.last_stop(state), run.now, run.settings, final=True)
    return run.payload(stop, "down", held_back)


def run_command(args: argparse.Namespace) -> int:
    journal.setup("alert", native=False)  # short-lived: its stream carries the unit reliably
    try:
        unit, ended = parse_instance(args.unit)
    except ValueError as exc:
        log.error("alert: %s", exc)
        return 0
    settings = Settings()
    try:
        settings = load_config(args.config)
    except ConfigProblem as exc:
        log.error("alert: %s", exc)
    try:
        systemd = Systemd(read_journal=bool(settings.channels) or args.dry_run)
        payload = alert(
            unit,
            ended or _monitor_variables(os.environ),
            settings,
            systemd=systemd,
            state_dir=args.state_dir,
            dry_run=args.dry_run,
        )
        if payload is None:
            return 0
        if args.dry_run:
            json.dump(payload, sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif not settings.channels:
            log.info("alert for %s not sent: no channel configured in %s", unit, args.config)
        else:
            deliver(settings, payload)
    except Exception as exc:  # exit 0 whatever happens: see the module docstring
        log.error("alert for %s failed: %s: %s", unit, type(exc).__name__, exc)
    return 0


ALERT_HELP = f"""\
Alert the configured channels that UNIT failed: its result, exit status and last error
lines from the journal (journalctl -u UNIT -p err), as JSON to webhooks (or a Slack
message), mail through the local sendmail, or commands (JSON on stdin).

The shipped units start it in airflow-alert@.service, as the airflow-alert account:
after every run, as airflow-alert@UNIT:RESULT:EXIT_CODE:EXIT_STATUS:INVOCATION_ID (their
ExecStopPost= fills these in; a run that failed is alerted), and from
OnFailure=airflow-alert@%N.service once the unit has failed for good, and as
airflow-alert@UNIT:started once the unit is READY (ExecStartPost=). Failures that share a
cause (the run's last failure event: MESSAGE_ID) within incident_window, of any unit, are
one incident: one alert naming every unit, one "resolved" when all are active again. A
unit that stays down always gets its own alert. With incident_window = 0, at most
max_alerts alerts per unit per window; the first failure after a good run always goes
out. Run by hand with a plain UNIT, it reports the unit's current state (try your
channels with it, as root or airflow-alert; --dry-run prints the payload).

Channels and limits: --config (default {DEFAULT_CONFIG}), documented in the
template install-units writes there. State: {STATE_DIR}.

exit status: always 0, even when a channel fails (that is logged): the alert must never
make a unit loop or change its result.
"""


def register(subparsers) -> None:
    """Add ``alert`` to the ``airflow-systemd`` command."""
    parser = subparsers.add_parser(
        "alert",
        help="alert the configured channels that a unit failed (run by the units themselves)",
        description=ALERT_HELP,
    )
    parser.add_argument(
        "unit", metavar="UNIT", help="the unit, e.g. airflow-scheduler.service (or the instance name above)"
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, metavar="PATH", help="channels and limits (default: %(default)s)"
    )
    parser.add_argument(
        "--state-dir",
        default=STATE_DIR,
        metavar="DIR",
        help="rate limits, incidents and runs (default: %(default)s)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the payload; deliver nothing, record nothing"
    )
    parser.set_defaults(func=run_command)
