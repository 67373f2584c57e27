"""How a unit's previous run ended: the record the alert writes, the service reads at start.

systemd tells a starting service nothing about the run before. The alert command, which the
units start after every run (ExecStopPost=), records how each run ended in
``runs/UNIT.json`` under the alert's state directory (the one part of that state the services
may read); at start, :func:`report_restart_after_failure` reads it back and logs
RESTARTED_AFTER_FAILURE when that run failed.

Both sides use this module, which imports no alert code: the record's format and its reading
live here once, and the journal (which the alert uses too) stays free of alert code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping

from airflow_systemd import journal
from airflow_systemd.contract import ALERT_RUNS_DIR as RUNS_DIR
from airflow_systemd.contract import ALERT_STATE_DIR as STATE_DIR
from airflow_systemd.contract import RESTARTED_AFTER_FAILURE

log = logging.getLogger("airflow_systemd")


@dataclasses.dataclass(frozen=True)
class Stop:
    """How one run of a unit ended, in systemd's words ($SERVICE_RESULT & co, systemd.exec(5)).

    ``time`` and ``restarts`` are known after a run (the alert records them); ``state``
    (ActiveState/SubState) only when asked by hand.
    """

    result: str
    exit_code: str = ""
    exit_status: str = ""
    invocation_id: str = ""
    time: float | None = None
    restarts: bool | None = None
    state: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], prefix: str = "") -> Stop:
        """From ExecStopPost='s variables or, prefixed MONITOR_, from those systemd gives an
        OnFailure= unit."""
        return cls(
            result=environ[f"{prefix}SERVICE_RESULT"],
            exit_code=environ.get(f"{prefix}EXIT_CODE", ""),
            exit_status=environ.get(f"{prefix}EXIT_STATUS", ""),
            invocation_id=environ.get(f"{prefix}INVOCATION_ID", ""),
        )

    @classmethod
    def from_record(cls, record: object) -> Stop | None:
        """A stop as written by :meth:`record`; None if ``record`` is not one."""
        if not isinstance(record, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"result": "", **{k: v for k, v in record.items() if k in known}})

    def record(self) -> dict:
        """What the state files hold: the fields that are known."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def describe(self) -> str:
        """ "result 'exit-code', exit status 1" or "result 'watchdog', signal ABRT (core dumped)"."""
        how = ""
        if self.exit_code == "exited":
            how = f", exit status {self.exit_status}"
        elif self.exit_code in ("killed", "dumped"):
            how = f", signal {self.exit_status}" + (" (core dumped)" if self.exit_code == "dumped" else "")
        return f"result '{self.result or 'unknown'}'{how}"

    def this_boot(self) -> bool:
        """True if this run ended (was recorded) after this machine booted."""
        return isinstance(self.time, (int, float)) and self.time > booted_at()


def booted_at() -> float:
    """When this machine booted, on the wall clock.

    Not the boot ID: a container overmounts /proc/sys/kernel/random/boot_id with its own, and a
    unit with ProtectKernelTunables=yes sees the host's instead. CLOCK_BOOTTIME is the same
    for everyone.
    """
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def run_file(state_dir: str, unit: str) -> str:
    """``runs/UNIT.json``: 0644 in a 0755 directory, written by the alert under its lock."""
    return os.path.join(state_dir, RUNS_DIR, f"{unit}.json")


def read_json(path: str) -> dict:
    """The JSON object in ``path``; {} if there is none (missing, unreadable or not an object)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def previous_stop(unit: str, state_dir: str | None = None) -> Stop | None:
    """How the last run of ``unit`` ended, as recorded after it; None if not in this boot.

    Read by the starting service itself, from the one file of the alert's state it may read.
    A record from an earlier boot is ignored: the runs between it and the reboot may have
    ended without anyone recording it (a power cut).
    """
    stop = Stop.from_record(read_json(run_file(state_dir or STATE_DIR, unit)).get("last_stop"))
    return stop if stop is not None and stop.this_boot() else None


def own_unit(cgroup_file: str = "/proc/self/cgroup") -> str | None:
    """The service this process runs in, from its cgroup (what sd_pid_get_unit(3) reads)."""
    try:
        with open(cgroup_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[-1]
        units = [part for part in path.split("/") if part.endswith(".service")]
        if units:
            return units[-1]
    return None


def report_restart_after_failure() -> None:
    """RESTARTED_AFTER_FAILURE when the previous run of this unit failed.

    Never raises: a start must not fail over a report.
    """
    try:
        unit = own_unit()
        stop = previous_stop(unit) if unit else None
        if stop is None or stop.result in (None, "", "success"):
            return
        journal.event(
            RESTARTED_AFTER_FAILURE,
            f"starting after a failure: the previous run of {unit} ended with {stop.describe()}",
            level=logging.WARNING,
            PREVIOUS_RESULT=stop.result,
            PREVIOUS_EXIT_CODE=stop.exit_code,
            PREVIOUS_EXIT_STATUS=stop.exit_status,
            PREVIOUS_INVOCATION_ID=stop.invocation_id,
        )
    except Exception as exc:
        log.warning("could not tell whether the previous run failed: %s", exc)
