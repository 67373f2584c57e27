"""What an alert says: the JSON every channel gets, and Slack's one-message form of it."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from airflow_systemd.last_run import Stop


def build_payload(
    unit: str, stop: Stop, kind: str, found: Mapping, held_back: int, now: float, host: str
) -> dict:
    """The JSON every channel gets.

    ``kind``: "failed" (systemd restarts it), "down" (it stays failed) or "status" (by hand).
    ``found``: what :func:`airflow_systemd.alert.systemd.evidence` found in the journal.
    """
    errors = list(found.get("errors") or [])
    last_error = errors[-1] if errors else ""
    what = stop.describe()
    if kind == "failed":
        summary = f"{unit} failed on {host} ({what}); systemd restarts it"
    elif kind == "down" and found.get("start_limit_hit"):
        summary = (
            f"{unit} is down on {host}: systemd gave up restarting it (start limit hit; last run: {what})"
        )
    elif kind == "down":
        summary = (
            f"{unit} failed on {host} ({what}) and stays down: fix the cause, then systemctl start {unit}"
        )
    else:
        summary = f"{unit} on {host}: {stop.state or 'unknown'}, last {what}"
    if last_error:
        summary += f": {last_error}"
    if held_back:
        summary += f" [{held_back} earlier failure alert(s) held back by the rate limit]"
    return {
        "unit": unit,
        "host": host,
        "kind": kind,
        "result": stop.result,
        "exit_code": stop.exit_code,
        "exit_status": stop.exit_status,
        "invocation_id": stop.invocation_id,
        "restarts": kind == "failed",
        "start_limit_hit": bool(found.get("start_limit_hit")),
        "time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "last_error": last_error,
        "errors": errors,
        "exception": found.get("exception"),
        "held_back": held_back,
        "journal": _journal_command(unit, stop.invocation_id),
    }


def _journal_command(unit: str, invocation_id: object) -> str:
    """The journalctl command line that shows the run: the service's output and systemd's."""
    if not invocation_id:
        return f"journalctl -u {unit}"
    return f"journalctl _SYSTEMD_INVOCATION_ID={invocation_id} + INVOCATION_ID={invocation_id}"


def slack_payload(payload: dict) -> dict:
    """Slack's incoming-webhook form: the summary, and the error lines as a code block."""
    text = payload["summary"]
    if payload["errors"]:
        text += "\n```\n" + "\n".join(payload["errors"]) + "\n```"
    return {"text": text}


def incident_payload(first: dict, incident: Mapping, host: str) -> dict:
    """The one alert of an incident: the first failure's payload (``first``), with the cause and
    every unit that failed with it so far."""
    units = sorted(incident["units"])
    failures = sum(m["failures"] for m in incident["units"].values())
    summary = (
        f"incident on {host}: {len(units)} unit(s) failed with one cause, {incident['words']}: "
        f"{', '.join(units)} ({failures} failure(s) since {_clock(incident['opened'])}; "
        f"first {first['unit']}, {Stop.from_record(incident['first']['stop']).describe()})"
    )
    over = all(m["state"] == "back" for m in incident["units"].values())
    summary += (
        "; all active again already" if over else "; a 'resolved' alert follows when all are active again"
    )
    return {
        **first,
        "kind": "incident",
        "restarts": True,
        "summary": summary,
        "cause": incident["cause"],
        "units": units,
        "failures": failures,
        "resolved": over,
        "incident": incident["id"],
    }


def resolved_payload(unit: str, incidents: list[Mapping], now: float, host: str) -> dict:
    """The end of one or more incidents: every unit of each is active again (``unit`` last)."""
    units = sorted({u for i in incidents for u in i["units"]})
    failures = sum(m["failures"] for i in incidents for m in i["units"].values())
    opened = min(i["opened"] for i in incidents)
    causes = "; ".join(i["words"] for i in incidents)
    summary = (
        f"resolved on {host}: {', '.join(units)} active again ({unit} last), "
        f"{_duration(now - opened)} after the incident opened at {_clock(opened)} "
        f"({failures} failure(s)): {causes}"
    )
    return {
        "unit": unit,
        "host": host,
        "kind": "resolved",
        "result": "",
        "exit_code": "",
        "exit_status": "",
        "invocation_id": "",
        "restarts": False,
        "start_limit_hit": False,
        "time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "last_error": "",
        "errors": [],
        "exception": None,
        "held_back": 0,
        "journal": f"journalctl -u {' -u '.join(units)} --since @{int(opened)}",
        "cause": "; ".join(i["cause"] for i in incidents),
        "units": units,
        "failures": failures,
        "resolved": True,
        "incident": "; ".join(i["id"] for i in incidents),
    }


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}min {seconds % 60}s" if seconds >= 60 else f"{seconds}s"
