"""What systemd says about a unit: whether it restarts it, its state, its journal.

:func:`will_restart` re-implements systemd's restart rule, because ExecStopPost= runs before
systemd decides; :class:`Systemd` asks ``systemctl`` and ``journalctl`` (tests substitute their
own answers); :func:`evidence` picks from the journal what an alert shows of one run.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Mapping

from airflow_systemd.contract import CRASHED
from airflow_systemd.last_run import Stop

# systemd's own words for a start refused by StartLimitBurst= (it keeps Result= as it was).
START_LIMIT_TEXT = "Start request repeated too quickly"
EXIT_CODES = {"1": "exited", "2": "killed", "3": "dumped"}  # ExecMainCode= (CLD_*)


def will_restart(result: str, exit_code: str, exit_status: str, props: Mapping[str, str]) -> bool:
    """Whether systemd restarts a service that ended like this (service_shall_restart())."""
    if result == "success" and props.get("Restart") not in ("always", "on-success"):
        return False

    def listed(key: str) -> bool:
        values = props.get(key, "").split()
        if exit_code == "exited":
            return exit_status in values
        if exit_code in ("killed", "dumped"):
            return exit_status in values or f"SIG{exit_status}" in values
        return False

    if listed("RestartPreventExitStatus"):
        return False
    if listed("RestartForceExitStatus"):
        return True
    return {
        "always": True,
        "on-success": result == "success",
        "on-failure": result != "success",
        "on-abnormal": result not in ("success", "exit-code"),
        "on-watchdog": result == "watchdog",
        "on-abort": result in ("signal", "core-dump"),
    }.get(props.get("Restart", "no"), False)


class Systemd:
    """The two questions asked of systemd; tests substitute their own answers."""

    def __init__(self, read_journal: bool = True) -> None:
        self.read_journal = read_journal  # no channel to tell: spare the unit's stop the time

    def show(self, unit: str, *props: str) -> dict[str, str]:
        try:
            out = subprocess.run(
                ["systemctl", "show", "-p", ",".join(props), unit],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> list[dict]:
        """The unit's recent journal entries of priority warning or higher, oldest first."""
        if not self.read_journal:
            return []
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            # Entries logged before this call are in the files once it returns.
            subprocess.run(["journalctl", "--sync"], capture_output=True, timeout=5)
        try:
            out = subprocess.run(
                ["journalctl", "-u", unit, "-p", "warning", "-n", "500", "-o", "json", "--no-pager"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        entries = []
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries


def current_stop(systemd: Systemd, unit: str) -> Stop:
    """How the unit's last run ended and where it is now, as ``systemctl show`` says."""
    props = systemd.show(
        unit, "Result", "ExecMainCode", "ExecMainStatus", "InvocationID", "ActiveState", "SubState"
    )
    code = EXIT_CODES.get(props.get("ExecMainCode", ""), "")
    status = props.get("ExecMainStatus", "")
    if code in ("killed", "dumped") and status.isdigit():
        with contextlib.suppress(ValueError):
            status = signal.Signals(int(status)).name.removeprefix("SIG")
    return Stop(
        result=props.get("Result", ""),
        exit_code=code,
        exit_status=status,
        invocation_id=props.get("InvocationID", ""),
        state=f"{props.get('ActiveState', 'unknown')}/{props.get('SubState', 'unknown')}",
    )


def entry_text(entry: Mapping) -> str:
    """The MESSAGE of a journal entry from ``journalctl -o json``, as text."""
    value = entry.get("MESSAGE", "")
    if isinstance(value, list):  # journalctl's JSON for a value that is not valid UTF-8
        value = bytes(v for v in value if isinstance(v, int)).decode("utf-8", "replace")
    return str(value)


def evidence(entries: list[dict], invocation_id: str, limit: int) -> dict:
    """The error lines, the crash, and whether the start limit was hit, for one run."""
    if invocation_id:
        entries = [
            e for e in entries if invocation_id in (e.get("_SYSTEMD_INVOCATION_ID"), e.get("INVOCATION_ID"))
        ]
    errors, crash, start_limit = [], None, False
    for entry in entries:
        text = entry_text(entry)
        start_limit = start_limit or START_LIMIT_TEXT in text
        try:
            urgent = int(entry.get("PRIORITY", 6)) <= 3
        except ValueError:
            urgent = False
        if urgent:
            errors.append((text.strip().splitlines() or [""])[0][:500])
        if entry.get("MESSAGE_ID") == CRASHED:
            crash = {"type": entry.get("EXCEPTION_TYPE"), "message": entry.get("EXCEPTION_MESSAGE")}
    return {"errors": errors[-limit:], "exception": crash, "start_limit_hit": start_limit}
