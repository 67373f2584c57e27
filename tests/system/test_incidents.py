"""One database outage under every Airflow service: one incident alert, one "resolved".

The shipped alert settings (incident_window 10 min, incident_wait 20 s) and a real HTTP
receiver on the host; the database is the deployment's own PostgreSQL cluster, stopped for two
minutes while airflow.target runs (Airflow 3: scheduler, DAG processor, triggerer, API server).
"""

from __future__ import annotations

import time

import pytest

from airflow_systemd import journal
from tests.harness.deployment import SERVICES_3
from tests.harness.receiver import Receiver

ALERT_CONFIG = "/etc/airflow-systemd/alert.conf"
ALERT_STATE = "/var/lib/airflow-systemd-alert"
OUTAGE = 120
# The shipped per-unit limit (max_alerts per window) that incidents replace.
OLD_PER_UNIT_LIMIT = 3
UNITS = [f"{s}.service" for s in SERVICES_3]
# The shipped WatchdogSec= instead of the tests' 10 s: a loop that retries its queries for a
# few seconds (Airflow's run_with_db_retries) then fails on the lost database, as in production,
# rather than being killed by the watchdog first.
SHIPPED_WATCHDOG = "60-shipped-watchdog.conf"
JOB_SERVICES = [s for s in SERVICES_3 if s != "airflow-api-server"]


@pytest.fixture
def target(unit):
    with Receiver() as receiver:
        unit.sb.exec("rm", "-rf", ALERT_STATE)
        unit.sb.write_file(ALERT_CONFIG, f"[webhook]\nurl = {receiver.url}\n", mode=0o640)
        unit.sb.exec("chgrp", "airflow-alert", ALERT_CONFIG)
        for service in JOB_SERVICES:
            unit.drop_in(SHIPPED_WATCHDOG, "[Service]\nWatchdogSec=30s\n", service)
        unit.sb.systemctl("enable", *SERVICES_3)
        unit.sb.systemctl("start", "airflow.target")
        all_running(unit, 180)
        try:
            yield unit, receiver
        finally:
            unit.stop_all()
            unit.sb.systemctl("disable", *SERVICES_3, check=False)
            unit.sb.exec("rm", "-f", ALERT_CONFIG)
            for service in JOB_SERVICES:
                unit.sb.exec("rm", "-f", f"/etc/systemd/system/{service}.service.d/{SHIPPED_WATCHDOG}")
            unit.sb.daemon_reload()


def all_running(d, timeout: float) -> None:
    for name in UNITS:
        d.wait_for(lambda n=name: d.state(n) == "active/running", timeout, name, unit=name)


def test_a_database_outage_under_every_service_is_one_incident_and_one_resolved(target):
    d, receiver = target
    restarts_before = {n: int(d.props(n)["NRestarts"]) for n in UNITS}
    d.pg.stop()
    stopped = time.time()
    time.sleep(OUTAGE)
    d.pg.start()
    back = time.time()
    all_running(d, 180)
    d.wait_for(lambda: any(b["kind"] == "resolved" for b in receiver.bodies), 120, "the resolved alert")
    time.sleep(5)  # a late extra alert would have arrived by now
    restarts = {n: int(d.props(n)["NRestarts"]) - restarts_before[n] for n in UNITS}
    said = "\n".join(str((b["kind"], b["cause"], b["units"], b["summary"])) for b in receiver.bodies)
    assert [b["kind"] for b in receiver.bodies] == ["incident", "resolved"], f"{restarts}\n{said}"
    incident, resolved = receiver.bodies
    # Every unit that systemd restarted during the outage is named, in both alerts, and no other.
    restarted = sorted(n for n, count in restarts.items() if count)
    assert len(restarted) >= 2, restarts
    assert incident["units"] == resolved["units"] == restarted, (restarts, incident, resolved)
    assert incident["cause"] == journal.DB_UNREACHABLE, incident
    # What the per-unit limit (3 per unit and hour, incident_window = 0) sends for the same
    # failures: one alert per restart up to the limit, and no "resolved".
    per_unit = sum(min(count, OLD_PER_UNIT_LIMIT) for count in restarts.values())
    sent_at = {body["kind"]: t for t, body, _ in receiver.posts}
    print(
        f"\ndatabase stopped {OUTAGE}s under {len(UNITS)} services: restarts {restarts}; "
        f"2 alerts (incident {sent_at['incident'] - stopped:.1f}s after the stop, naming "
        f"{len(incident['units'])} units; resolved {sent_at['resolved'] - back:.1f}s after the "
        f"database was back); the per-unit limit would have sent {per_unit} and no 'resolved'"
    )
