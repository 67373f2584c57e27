"""What the alert remembers per unit: the last run's end, the rate limit, the alert sent.

One JSON file per unit in :data:`STATE_DIR`, read and written back under an exclusive lock
(systemd may start the after-run and the OnFailure= alert of one failure at once). Only this
account can read it; how the unit's last run ended is also written to ``runs/UNIT.json``
(:mod:`airflow_systemd.last_run`), readable by all: that is how a starting service learns that
its previous run failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator

from airflow_systemd.alert.config import Settings
from airflow_systemd.contract import ALERT_RUNS_DIR as RUNS_DIR
from airflow_systemd.contract import ALERT_STATE_DIR as STATE_DIR
from airflow_systemd.last_run import Stop, read_json, run_file

log = logging.getLogger("airflow_systemd")
INCIDENTS = "incidents"  # incidents.json: no unit is named so (units have a suffix)


def _state_file(state_dir: str, unit: str) -> str:
    return os.path.join(state_dir, f"{unit}.json")


def read_state(unit: str, state_dir: str = STATE_DIR) -> dict:
    return read_json(_state_file(state_dir, unit))


def _write_json(path: str, value: dict, mode: int) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, path)


def _prepare(state_dir: str) -> None:
    runs = os.path.join(state_dir, RUNS_DIR)
    os.makedirs(runs, exist_ok=True)
    os.chmod(state_dir, 0o711)
    os.chmod(runs, 0o755)


@contextlib.contextmanager
def _locked(state_dir: str, name: str) -> Iterator[None]:
    with open(os.open(os.path.join(state_dir, f"{name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def locked_incidents(state_dir: str = STATE_DIR) -> Iterator[dict]:
    """The incidents of all units (:mod:`.incident`), ``incidents.json``, read and written
    back under an exclusive lock of their own, with the same modes as a unit's state (0600)."""
    _prepare(state_dir)
    with _locked(state_dir, INCIDENTS):
        book = read_json(os.path.join(state_dir, f"{INCIDENTS}.json"))
        yield book
        _write_json(os.path.join(state_dir, f"{INCIDENTS}.json"), book, 0o600)


@contextlib.contextmanager
def locked_state(unit: str, state_dir: str = STATE_DIR) -> Iterator[dict]:
    """The unit's state, read and written back under an exclusive lock (flock).

    The directory is 0711 and its files 0600: DAG code (the airflow user) can neither read the
    rate limit's state nor list the units; it can open ``runs/UNIT.json``, the last run's end
    (0644 in a 0755 directory), which the service reads at start.
    """
    _prepare(state_dir)
    with _locked(state_dir, unit):
        state = read_state(unit, state_dir)
        yield state
        _write_json(_state_file(state_dir, unit), state, 0o600)
        if "last_stop" in state:
            _write_json(run_file(state_dir, unit), {"last_stop": state["last_stop"]}, 0o644)


def last_stop(state: dict) -> Stop | None:
    """The end of the unit's last run recorded in ``state``, if any (of any boot)."""
    return Stop.from_record(state.get("last_stop"))


def admit(state: dict, previous: Stop | None, now: float, settings: Settings, *, final: bool) -> int | None:
    """Apply the rate limit to one failure; record the outcome in ``state``.

    Returns None if the alert is held back, else how many alerts were held back before it.
    A failure that ends the unit for good (``final``) and the first failure after a run that
    did not fail are always let through.
    """
    recent = [t for t in state.get("deliveries", []) if now - t < settings.window]
    first = previous is None or previous.result == "success"
    if final or first or len(recent) < settings.max_alerts:
        held_back = int(state.get("held_back", 0))
        state.update(deliveries=[*recent, now], held_back=0)
        return held_back
    state.update(deliveries=recent, held_back=int(state.get("held_back", 0)) + 1)
    return None


def alerted_final(state: dict, stop: Stop, unit: str) -> bool:
    """Whether the final failure of this run went out already: systemd starts both the after-run
    and the OnFailure= alert for a failure it does not restart, and either may come first."""
    if stop.invocation_id and state.get("final_invocation_id") == stop.invocation_id:
        log.info("alert for %s: its failure was alerted already", unit)
        return True
    return False


def mark_final(state: dict, stop: Stop) -> None:
    """Remember that the final failure of this run is alerted (see :func:`alerted_final`)."""
    state["final_invocation_id"] = stop.invocation_id
