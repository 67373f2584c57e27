"""Incidents: failures of several units that share a cause, alerted once.

A failure's cause is the MESSAGE_ID of the run's last failure event in the journal
(:data:`FAILURE_EVENTS`: DB_UNREACHABLE, CONFIG_ERROR, or CRASHED with the exception's type;
a crash on a lost database connection (its DB_ERROR field) and a failed heartbeat count as
DB_UNREACHABLE);
a run that logged none is caused by how it ended, in systemd's words (``watchdog``,
``exit-code/1``). The first failure with a cause opens an incident; further failures with that
cause, of any unit, within ``incident_window`` of the opening join it and are only recorded.
Its alert goes out ``incident_wait`` after the opening, naming every unit that joined by then.
When every unit of an incident is active again (the unit's ExecStartPost= reports its READY:
``airflow-alert@UNIT:started``), one "resolved" alert names them all.

These functions work on the ``book``, the dict in ``incidents.json`` that
:func:`.history.locked_incidents` reads and writes back under its lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from airflow_systemd.alert.systemd import entry_text
from airflow_systemd.contract import CONFIG_ERROR, CRASHED, DB_UNREACHABLE, EVENTS, HEARTBEAT_FAILED
from airflow_systemd.last_run import Stop, booted_at

FAILURE_EVENTS = (DB_UNREACHABLE, CONFIG_ERROR, CRASHED, HEARTBEAT_FAILED)


def cause_of(entries: list[dict], stop: Stop) -> tuple[str, str]:
    """The cause of a failed run (a key, and words for it) from its journal entries.

    ``entries``: the unit's entries, oldest first; those of other runs are skipped.
    """
    cause = None
    for entry in entries:
        if stop.invocation_id and stop.invocation_id not in (
            entry.get("_SYSTEMD_INVOCATION_ID"),
            entry.get("INVOCATION_ID"),
        ):
            continue
        if entry.get("MESSAGE_ID") in FAILURE_EVENTS:
            cause = entry
    if cause is None:
        how = "/".join(part for part in (stop.result or "unknown", stop.exit_status) if part)
        return f"result:{how}", f"{stop.describe()} (no failure event in the journal)"
    message_id = cause["MESSAGE_ID"]
    # A service that lost its database mid-run (a crash on it, or a heartbeat failing until the
    # watchdog kill): the same cause as the start-up wait's, so one outage is one incident.
    if message_id == CRASHED and cause.get("DB_ERROR"):
        words = f"{EVENTS[DB_UNREACHABLE]}: {cause['DB_ERROR']}"
        return DB_UNREACHABLE, f"{words} (MESSAGE_ID={message_id}, {cause.get('EXCEPTION_TYPE')})"
    if message_id == HEARTBEAT_FAILED:
        return DB_UNREACHABLE, f"{EVENTS[DB_UNREACHABLE]}: {entry_text(cause)} (MESSAGE_ID={message_id})"
    if message_id == CRASHED:
        kind = str(cause.get("EXCEPTION_TYPE") or "unknown")
        return f"{message_id}:{kind}", f"crashed with {kind} (MESSAGE_ID={message_id})"
    return message_id, f"{EVENTS[message_id]}: {entry_text(cause)} (MESSAGE_ID={message_id})"


def prune(book: dict) -> list[dict]:
    """The open incidents, without those of an earlier boot (their units' runs were lost)."""
    boot = booted_at()
    book["incidents"] = [i for i in book.get("incidents", []) if i.get("opened", 0) > boot]
    return book["incidents"]


def record_failure(
    book: dict, unit: str, cause: str, words: str, stop: Stop, now: float, window: float
) -> tuple[dict, bool]:
    """Put the failure of ``unit`` into the incident of its cause; returns it, and whether it
    is new (its alert is this run's to send)."""
    incidents = prune(book)
    for incident in incidents:
        if incident["cause"] == cause and now - incident["opened"] < window:
            member = incident["units"].setdefault(unit, {"failures": 0, "first": now})
            member.update(state="down", failures=member["failures"] + 1, last=now)
            return incident, False
    incident = {
        "id": f"{now:.6f}-{os.getpid()}-{len(incidents)}",
        "cause": cause,
        "words": words,
        "opened": now,
        "alerted": False,
        "first": {"unit": unit, "stop": stop.record()},
        "units": {unit: {"state": "down", "failures": 1, "first": now, "last": now}},
    }
    incidents.append(incident)
    return incident, True


def record_down(book: dict, unit: str, now: float) -> None:
    """A unit that systemd does not restart stays down in every incident it is part of."""
    for incident in prune(book):
        if unit in incident["units"]:
            incident["units"][unit].update(state="down", last=now)


def record_started(book: dict, unit: str, now: float) -> list[dict]:
    """``unit`` is active again; returns the incidents this resolves (every unit back), removed
    from the book. One whose alert has not gone out yet stays: its alert says it is over."""
    resolved = []
    for incident in prune(book):
        if unit in incident["units"]:
            incident["units"][unit].update(state="back", back=now)
            if incident["alerted"] and all_back(incident):
                resolved.append(incident)
    book["incidents"] = [i for i in book["incidents"] if i not in resolved]
    return resolved


def all_back(incident: Mapping) -> bool:
    return all(member["state"] == "back" for member in incident["units"].values())


def take(book: dict, incident_id: str) -> dict | None:
    """After the wait: mark the incident alerted; removed if every unit is back already."""
    for incident in prune(book):
        if incident["id"] == incident_id:
            incident["alerted"] = True
            if all_back(incident):
                book["incidents"].remove(incident)
            return incident
    return None
