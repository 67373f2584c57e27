"""Incidents (airflow_systemd/alert/incident.py): one alert for failures of several units that
share a cause, one "resolved" when all are back.

The alert is driven as the units drive it: by its instance name (``UNIT:RESULT:...`` from
ExecStopPost=, ``UNIT:started`` from ExecStartPost=, ``UNIT`` with $MONITOR_* from OnFailure=),
the failures of several units at once in parallel, as systemd starts their alert units, and
delivered to a real local HTTP receiver. systemd's answers (unit properties, journal entries)
are substituted, as in test_alert.py.
"""

from __future__ import annotations

import itertools
import json
import stat
import threading
import time
from importlib import resources

import pytest

from airflow_systemd import journal
from airflow_systemd.alert.channels import deliver
from airflow_systemd.alert.command import alert, parse_instance
from airflow_systemd.alert.config import Settings, Webhook
from airflow_systemd.alert.systemd import Systemd
from tests.harness.receiver import Receiver

UNITS = ["airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server"]
SHIPPED = {"Restart": "on-failure", "RestartPreventExitStatus": "78", "RestartForceExitStatus": ""}


class JournalOf(Systemd):
    """systemd's answers: the shipped restart settings, and each unit's journal entries."""

    def __init__(self):
        self.entries: dict[str, list[dict]] = {}
        self.lock = threading.Lock()

    def show(self, unit, *props):
        return dict(SHIPPED)

    def journal(self, unit):
        with self.lock:
            return list(self.entries.get(unit, []))

    def log(self, unit, invocation, message_id, message, priority=4, **fields):
        with self.lock:
            self.entries.setdefault(f"{unit}.service", []).append(
                {
                    "MESSAGE": message,
                    "PRIORITY": str(priority),
                    "MESSAGE_ID": message_id,
                    "_SYSTEMD_INVOCATION_ID": invocation,
                    **fields,
                }
            )


class Units:
    """The units' hooks, as systemd runs them, each one run of ``airflow-systemd alert``."""

    def __init__(self, tmp_path, receiver, **settings):
        self.settings = Settings(channels=(Webhook("webhook:ops", receiver.url),), **settings)
        self.systemd = JournalOf()
        self.state_dir = str(tmp_path / "state")
        self.invocations = itertools.count(1)  # thread-safe: the failures come in parallel

    def run(self, instance, env=None, now=None):
        unit, ended = parse_instance(instance)
        payload = alert(
            unit, ended or env or {}, self.settings, systemd=self.systemd, state_dir=self.state_dir, now=now
        )
        if payload is not None:
            deliver(self.settings, payload)
        return payload

    def fail(self, unit, cause=journal.DB_UNREACHABLE, now=None, status="1", **fields):
        """One run of ``unit`` logs ``cause`` and fails; its ExecStopPost= starts the alert."""
        invocation = f"inv{next(self.invocations)}"
        if cause == journal.CRASHED:
            fields.setdefault("EXCEPTION_TYPE", "RuntimeError")
            self.systemd.log(unit, invocation, cause, "crashed", 3, **fields)
        elif cause:
            self.systemd.log(unit, invocation, cause, "metadata database unreachable: refused")
        return self.run(f"{unit}:exit-code:exited:{status}:{invocation}", now=now)

    def fail_at_once(self, units, cause=journal.DB_UNREACHABLE, now=None):
        """Their failures at once: systemd starts each unit's alert in parallel."""
        threads = [threading.Thread(target=self.fail, args=(u, cause, now)) for u in units]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def started(self, unit, now=None):
        """The unit is READY again; its ExecStartPost= starts airflow-alert@UNIT:started."""
        return self.run(f"{unit}:started", now=now)


def services(names):
    return sorted(f"{name}.service" for name in names)


def test_a_database_outage_under_four_units_is_one_incident_and_one_resolved(tmp_path):
    with Receiver() as receiver:
        units = Units(tmp_path, receiver, incident_wait=1)
        units.fail_at_once(UNITS)
        for _ in range(3):  # each restarts into the outage, and fails again
            for unit in UNITS:
                assert units.fail(unit) is None
        assert len(receiver.bodies) == 1
        for unit in UNITS[:3]:
            assert units.started(unit) is None
        assert len(receiver.bodies) == 1
        units.started(UNITS[3])
        incident, resolved = receiver.wait_for(2, 5)
        assert len(receiver.bodies) == 2
    assert incident["kind"] == "incident"
    assert incident["units"] == services(UNITS)
    assert incident["cause"] == journal.DB_UNREACHABLE
    assert "4 unit(s) failed with one cause, DB unreachable" in incident["summary"]
    for unit in services(UNITS):
        assert unit in incident["summary"]
    assert resolved["kind"] == "resolved" and resolved["units"] == services(UNITS)
    assert resolved["failures"] == 16
    assert resolved["summary"].startswith(f"resolved on {resolved['host']}: ")
    # One locked file for all units, as private as a unit's state.
    state = tmp_path / "state"
    assert stat.S_IMODE((state / "incidents.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "incidents.lock").stat().st_mode) == 0o600
    assert json.loads((state / "incidents.json").read_text()) == {"incidents": []}


def test_a_unit_systemd_gave_up_on_is_still_alerted_inside_an_incident(tmp_path):
    with Receiver() as receiver:
        units = Units(tmp_path, receiver, incident_wait=0)
        units.fail_at_once(UNITS)
        assert len(receiver.bodies) == 1
        # The scheduler's start limit is hit: systemd starts its OnFailure= alert.
        units.systemd.log(UNITS[0], "inv1", "", "Start request repeated too quickly.", 4)
        env = {
            "MONITOR_SERVICE_RESULT": "exit-code",
            "MONITOR_EXIT_CODE": "exited",
            "MONITOR_EXIT_STATUS": "1",
            "MONITOR_INVOCATION_ID": "inv1",
        }
        down = units.run(UNITS[0], env)
        # The triggerer exits 78 (not restarted): its ExecStopPost= alert goes out too.
        stays = units.fail(UNITS[2], status="78")
        # The three others come back: the scheduler and triggerer are still down.
        for unit in UNITS[1:]:
            assert units.started(unit) is None
        assert len(receiver.bodies) == 3
    assert (down["kind"], down["start_limit_hit"], down["unit"]) == (
        "down",
        True,
        "airflow-scheduler.service",
    )
    assert (stays["kind"], stays["unit"]) == ("down", "airflow-triggerer.service")


def test_a_different_cause_is_a_separate_incident(tmp_path):
    with Receiver() as receiver:
        units = Units(tmp_path, receiver, incident_wait=1)
        units.fail_at_once(UNITS[:2])
        units.fail_at_once(UNITS[2:], cause=journal.CRASHED)
        units.fail(UNITS[3], cause=None)  # no failure event: how it ended is the cause
        bodies = receiver.wait_for(3, 5)
        assert len(bodies) == 3
        causes = {b["cause"]: b["units"] for b in bodies}
        assert causes == {
            journal.DB_UNREACHABLE: services(UNITS[:2]),
            f"{journal.CRASHED}:RuntimeError": services(UNITS[2:]),
            "result:exit-code/1": services(UNITS[3:]),
        }
        for unit in UNITS[:2]:
            units.started(unit)
        resolved = receiver.wait_for(4, 5)[-1]
        assert len(receiver.bodies) == 4
    assert (resolved["kind"], resolved["units"]) == ("resolved", services(UNITS[:2]))


def test_a_crash_on_the_lost_database_joins_the_outage_of_the_units_waiting_for_it(tmp_path):
    # What a real outage does: the running services fail on their next query (the lifecycle
    # adds DB_ERROR to their crash event), the restarted ones wait with DB_UNREACHABLE events.
    lost = dict(EXCEPTION_TYPE="OperationalError", DB_ERROR="connection refused")
    with Receiver() as receiver:
        units = Units(tmp_path, receiver, incident_wait=1)
        crash = threading.Thread(target=units.fail, args=(UNITS[0], journal.CRASHED), kwargs=lost)
        crash.start()  # the first failure, whose alert waits incident_wait for the others
        units.fail_at_once(UNITS[1:])
        crash.join()
        (incident,) = receiver.wait_for(1, 5)
        for unit in UNITS:
            units.started(unit)
        receiver.wait_for(2, 5)
        assert [b["kind"] for b in receiver.bodies] == ["incident", "resolved"]
    assert incident["cause"] == journal.DB_UNREACHABLE
    assert incident["units"] == services(UNITS)
    assert "failed with one cause, DB unreachable: " in incident["summary"]


def test_after_the_window_a_failure_opens_a_new_incident(tmp_path):
    start = time.time()
    with Receiver() as receiver:
        units = Units(tmp_path, receiver, incident_wait=0, incident_window=600)
        units.fail(UNITS[0], now=start)
        assert units.fail(UNITS[1], now=start + 599) is None
        later = units.fail(UNITS[2], now=start + 601)
        assert len(receiver.bodies) == 2
    assert (later["kind"], later["units"]) == ("incident", services(UNITS[2:3]))


def scenario(tmp_path, receiver, restarts, **settings):
    """Four units fail in one outage, each restarted ``restarts`` times into it, then back."""
    units = Units(tmp_path, receiver, incident_wait=0, **settings)
    start = time.time()
    for i in range(1 + restarts):  # RestartSec=10s between two runs of a unit
        for unit in UNITS:
            units.fail(unit, now=start + 10 * i)
    for unit in UNITS:
        units.started(unit, now=start + 10 * (restarts + 1))
    return len(receiver.bodies)


@pytest.mark.parametrize("restarts", [1, 4])
def test_the_alerts_of_an_outage_per_unit_and_as_an_incident(tmp_path, restarts):
    with Receiver() as receiver:
        per_unit = scenario(tmp_path / "per-unit", receiver, restarts, incident_window=0)
    with Receiver() as receiver:
        grouped = scenario(tmp_path / "incident", receiver, restarts)
    # The per-unit limit lets max_alerts (3) per unit per hour through; an incident is two.
    assert (per_unit, grouped) == (4 * min(1 + restarts, 3), 2)


def test_every_unit_that_alerts_its_failures_also_reports_that_it_is_back():
    units = resources.files("airflow_systemd") / "unit_files"
    alerting = [u for u in units.iterdir() if "ExecStopPost=-+systemctl start airflow-alert@" in _text(u)]
    assert len(alerting) == 6
    for unit in alerting:
        assert "ExecStartPost=-+systemctl start --no-block airflow-alert@%N:started.service" in _text(unit)


def _text(path) -> str:
    return path.read_text() if path.is_file() else ""


def test_a_watchdog_kill_after_a_failing_heartbeat_joins_the_database_outage(tmp_path):
    with Receiver() as receiver:
        units = Units(tmp_path, receiver, incident_wait=1)
        killed = threading.Thread(target=units.fail, args=(UNITS[0], journal.HEARTBEAT_FAILED))
        killed.start()
        units.fail_at_once(UNITS[1:])
        killed.join()
        (incident,) = receiver.wait_for(1, 5)
    assert (incident["cause"], incident["units"]) == (journal.DB_UNREACHABLE, services(UNITS))
