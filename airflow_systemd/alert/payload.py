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
