"""DAG code runs as the airflow user and must not become any other account (issue 10).

Under the real systemd of the sandbox, with the units install-units wrote: a DAG plants code
(PYTHONPATH + sitecustomize, LD_PRELOAD, PATH) and tries to put it into every environment file
the units read; then the scheduler fails every way an alert follows (killed, watchdog, a crash
loop to systemd giving up). The payloads log with SYSLOG_IDENTIFIER=afsd-pwned, and journald's
_UID says who ran them. Alerts still arrive, from processes that are not root.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from tests.harness import privilege
from tests.harness.deployment import FAULTS_INSIDE, SCHEDULER, VENV, WATCHDOG, running_loop
from tests.harness.receiver import Receiver

ALERT_CONFIG = "/etc/airflow-systemd/alert.conf"
ALERT_STATE = "/var/lib/airflow-systemd-alert"
ATTACK_LIB = "/usr/local/lib/afsd-attack"
ALERT_CGROUPS = "/sys/fs/cgroup/system.slice/system-airflow?x2dalert.slice"  # a glob: no escaping
HOLD = 3  # seconds each alert's command channel keeps its unit alive, to be seen in /proc
CRASH_LOOP = dict(PYTHONPATH=FAULTS_INSIDE, AFSD_TEST_FAULT="loop-exception", AFSD_TEST_OUT="/dev/null")


def as_airflow(d, *cmd: str):
    return d.sb.exec("setpriv", "--reuid=airflow", "--regid=airflow", "--init-groups", *cmd, check=False)


def markers(d, cursor: str) -> list[tuple[int, str]]:
    """(the uid that ran it, what it says) for every payload that ran since ``cursor``."""
    entries = d.journal_json(cursor, None, "SYSLOG_IDENTIFIER=afsd-pwned")
    return [(int(e["_UID"]), str(e.get("MESSAGE", ""))) for e in entries]


class AlertProcesses:
    """Every process seen in an airflow-alert@ unit's cgroup, read from /proc while it runs."""

    def __init__(self, d) -> None:
        self.d = d
        self.seen: dict[int, tuple[int, str]] = {}  # pid: (uid, command)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        script = (
            f"for p in $(cat {ALERT_CGROUPS}/*/cgroup.procs 2>/dev/null); do "
            "echo \"$p $(awk '/^Uid:/ {print $2}' /proc/$p/status 2>/dev/null) "
            "$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)\"; done; true"
        )
        while not self._stop.is_set():
            for line in self.d.sb.sh(script).stdout.splitlines():
                pid, uid, *cmd = line.split(" ", 2)
                if uid.isdigit():
                    self.seen[int(pid)] = (int(uid), " ".join(cmd))
            time.sleep(0.2)


@pytest.fixture
def attack(unit):
    """The attacker's payload compiled, alert.conf with a webhook receiver, the services up."""
    sb = unit.sb
    sb.write_file(f"{ATTACK_LIB}/pwn.c", (Path(__file__).parent / "attack" / "pwn.c").read_text())
    sb.exec("gcc", "-shared", "-fPIC", "-o", f"{ATTACK_LIB}/pwn.so", f"{ATTACK_LIB}/pwn.c")
    with Receiver() as receiver:
        sb.exec("rm", "-rf", ALERT_STATE)
        sb.write_file(
            ALERT_CONFIG,
            f"[alert]\nmax_alerts = 20\ntimeout = 10s\nincident_window = 0\n[webhook]\nurl = {receiver.url}\n"
            f"[command:hold]\ncommand = /bin/sleep {HOLD}\n",
            mode=0o640,
        )
        sb.exec("chgrp", "airflow-alert", ALERT_CONFIG)
        # A quick crash loop: systemd gives up after 3 starts, 1 s apart.
        unit.drop_in(
            "60-test-crash-loop.conf",
            "[Unit]\nStartLimitBurst=3\n[Service]\nRestartSec=1s\n",
            "airflow-scheduler",
        )
        sb.systemctl("start", SCHEDULER)
        unit.start_companions()
        try:
            yield unit, receiver
        finally:
            sb.exec("rm", "-f", "/etc/systemd/system/airflow-scheduler.service.d/60-test-crash-loop.conf")
            sb.exec("rm", "-rf", "/var/lib/airflow/.x", "/var/lib/airflow/secrets.env")
            unit.stop_all()
            sb.daemon_reload()
            sb.exec("rm", "-f", ALERT_CONFIG)


def test_dag_code_runs_as_no_other_account_through_any_failure_and_alerts_still_arrive(attack):
    d, receiver = attack
    cursor = d.cursor()
    dag = d.add_dag("afsd_attacker")
    run = d.trigger(dag)
    try:
        d.wait_for(lambda: d.run_state(dag, run) in ("success", "failed"), 180, "the attacker's run")
        log = as_airflow(
            d, "sh", "-c", f"cat /var/log/airflow/dag_id={dag}/run_id={run}/task_id=attack/attempt=1.log"
        ).stdout
        assert d.run_state(dag, run) == "success" and "AFSD-ATTACK-DONE" in log, log[-3000:]
    finally:
        d.retire(dag)
    airflow_uid = int(d.sb.exec("id", "-u", "airflow").stdout)
    injected = sorted(set(re.findall(r"AFSD-INJECTED (/[\w./-]+)", log)))
    print(f"\nthe DAG could append to: {injected or 'none'}")

    with AlertProcesses(d) as alert_processes:
        # 1. killed
        d.sb.systemctl("kill", "-s", "KILL", SCHEDULER)
        d.wait_for(lambda: any(b["result"] == "signal" for b in receiver.bodies), 60, "the kill's alert")
        d.wait_for(lambda: running_loop(d), 120, "the restart after the kill")
        # 2. the watchdog
        d.pg.freeze()
        try:
            d.wait_for(lambda: "Watchdog timeout" in d.journal(cursor), WATCHDOG + 30, "the watchdog")
        finally:
            d.pg.thaw()
        d.wait_for(
            lambda: any(b["result"] == "watchdog" for b in receiver.bodies), 60, "the watchdog's alert"
        )
        d.wait_for(lambda: running_loop(d), 150, "the restart after the watchdog")
        # 3. a crash loop until systemd gives up: the OnFailure= alert
        d.sb.systemctl("stop", SCHEDULER)
        d.sb.systemctl("reset-failed", SCHEDULER, check=False)  # the starts so far do not count
        d.configure(**CRASH_LOOP)
        d.sb.systemctl("start", "--no-block", SCHEDULER)
        d.wait_for(lambda: d.state() == "failed/failed", 180, "systemd to give up (start limit)")
        d.wait_for(lambda: any(b["kind"] == "down" for b in receiver.bodies), 60, "the final alert")

    ran = markers(d, cursor)
    print(f"payloads run (uid, what): {sorted(set(ran))}")
    bodies = receiver.bodies
    results = [(b["kind"], b["result"]) for b in bodies]
    assert ("failed", "signal") in results and ("failed", "watchdog") in results, results
    (final,) = [b for b in bodies if b["kind"] == "down"]
    assert final["start_limit_hit"], final

    # The alert ran, and nothing of it as root.
    alert_python = {
        pid: seen for pid, seen in alert_processes.seen.items() if "airflow_systemd alert" in seen[1]
    }
    assert alert_python, f"no alert process seen in /proc: {alert_processes.seen}"
    alert_uid = int(d.sb.exec("id", "-u", "airflow-alert").stdout)
    # systemd's own child between its fork and the exec of the alert is root for that moment
    # and named "(python3)" by systemd: systemd setting up the sandbox, none of the alert's code
    other = {
        pid: seen
        for pid, seen in alert_processes.seen.items()
        if seen[0] != alert_uid and not re.fullmatch(r"\(\S+\)", seen[1].strip())
    }
    assert other == {}, other

    # Each vector works, run by the airflow user; no other uid ever ran one.
    for via in ("via=pythonpath", "via=ld_preload", "via=path:systemctl"):
        assert (airflow_uid, f"uid={airflow_uid} {via}") in ran, (via, ran)
    assert {uid for uid, _ in ran} == {airflow_uid}, [m for m in ran if m[0] != airflow_uid]


def test_the_airflow_user_cannot_read_the_alert_channels_or_the_alert_state(unit):
    sb = unit.sb
    sb.write_file(ALERT_CONFIG, "[webhook]\nurl = http://127.0.0.1:9/secret-token\n", mode=0o640)
    sb.exec("chgrp", "airflow-alert", ALERT_CONFIG)
    try:
        sb.exec("rm", "-rf", ALERT_STATE)
        # what a unit's ExecStopPost= starts after a clean run: the alert records it
        sb.systemctl("start", "airflow-alert@airflow-db-migrate:success:exited:0:0123.service")
        state = f"{ALERT_STATE}/airflow-db-migrate.service.json"
        assert sb.exec("test", "-s", state, check=False).returncode == 0
        for path in (ALERT_CONFIG, state):
            denied = as_airflow(unit, "cat", path)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, (path, denied)
        assert as_airflow(unit, "ls", ALERT_STATE).returncode != 0
        # the one part it may read: how its units' last runs ended
        record = as_airflow(unit, "cat", f"{ALERT_STATE}/runs/airflow-db-migrate.service.json")
        assert json.loads(record.stdout)["last_stop"]["result"] == "success"
        # and nothing the units read as root or as the alert's account is the airflow user's
        for path in (ALERT_CONFIG, "/etc/airflow-systemd/secrets.env", "/etc/default/airflow"):
            assert (
                as_airflow(unit, "sh", "-c", f"test -w {path} || test -w $(dirname {path})").returncode != 0
            )
    finally:
        sb.exec("rm", "-f", ALERT_CONFIG)


# --- every privileged line of every installed unit ------------------------------------------


def test_no_command_run_as_another_account_reads_anything_the_airflow_user_can_write(unit):
    sb = unit.sb
    names = sb.sh("cd /etc/systemd/system && ls airflow*.service").stdout.split()
    assert "airflow-scheduler.service" in names and "airflow-alert@.service" in names
    commands = privilege.privileged_commands(sb, names)
    print("\ncommands run as another account than airflow:")
    for name, argv, _ in commands:
        print(f"  {name}: {argv}  -- {privilege.why(argv)}")
        assert privilege.why(argv), f"{name}: {argv} runs as another account and no reason is listed"
    assert {n for n, _, _ in commands} >= {"airflow-scheduler.service", "airflow-alert@.service"}
    paths = [p for _, _, ps in commands for p in ps]
    assert privilege.writable_by(sb, "airflow", f"{VENV}/bin/python", paths) == {}
    # and the hardening of every installed unit, the alert's included
    exposures = {name: privilege.exposure(sb, name) for name in names}
    assert {name: e for name, e in exposures.items() if e > 1.5} == {}
