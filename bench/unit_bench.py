"""What systemd sees: upstream's Type=simple unit beside ours, under a real systemd.

Run as root from the repository root with the virtualenv under test:

    .venvs/airflow-3.3.2/bin/python bench/unit_bench.py [--watchdog S] [--freeze S] [--outage S]

Boots the project's harness (tests/harness), installs this project's units with
`install-units`, and adds upstream's unit (apache/airflow scripts/systemd/airflow-scheduler.service:
Type=simple, Restart=always, RestartSec=5s) as upstream-airflow-scheduler.service, on the same
virtualenv, settings and private PostgreSQL. Then, for each unit in turn, the other stopped:

1. start: `systemctl start` returning, and the first scheduler heartbeat committed to the
   database (the loop runs). For Type=simple "started" means forked; for ours, READY=1.
2. database frozen (every PostgreSQL process SIGSTOPped) for --freeze seconds: when systemd
   acts (ours: "Watchdog timeout", SIGABRT, restart); upstream's unit stays active/running.
   Then the thaw, and the time until the loop heartbeats again.
3. database stopped for --outage seconds: the main process exiting, how many restarts the
   outage cost, and the time from the database's return to a heartbeat.

Times come from the host's clock, polled every 0.2 s (systemd's journal timestamps where there
is one). The last line of the output is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `tests` importable

from tests.harness.airflow_env import create_migrated_database  # noqa: E402
from tests.harness.deployment import SCHEDULER, VENV, Deployment  # noqa: E402
from tests.harness.pgcluster import PgCluster  # noqa: E402
from tests.harness.sandbox import Sandbox  # noqa: E402

UPSTREAM = "upstream-airflow-scheduler.service"
POLL = 0.2
UP_TIMEOUT = 180.0  # a restart after a long outage: ours backs off up to 30 s between DB tries


def upstream_unit(db_url: str) -> str:
    # Upstream's file, with this machine's paths: the virtualenv instead of /home/airflow's,
    # the settings every unit here reads, and the same state and log directories as ours.
    return f"""[Unit]
Description=Airflow scheduler daemon (apache/airflow scripts/systemd, for comparison)
After=network.target postgresql.service

[Service]
EnvironmentFile=/etc/default/airflow
Environment=AIRFLOW_HOME=/var/lib/airflow
Environment=AIRFLOW__LOGGING__BASE_LOG_FOLDER=/var/log/airflow
Environment=AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={db_url}
StateDirectory=airflow
LogsDirectory=airflow
User=airflow
Group=airflow
Type=simple
ExecStart={VENV}/bin/airflow scheduler
Restart=always
RestartSec=5s
"""


def since(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 2)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Bench:
    def __init__(self, d: Deployment, unit: str) -> None:
        self.d = d
        self.unit = unit

    def props(self) -> dict[str, str]:
        return self.d.props(self.unit)

    def last_heartbeat(self) -> float:
        """Epoch of the newest SchedulerJob heartbeat; 0 if none (or the DB is unreachable)."""
        out = self.d.pg.sql(
            "SELECT coalesce(extract(epoch FROM max(latest_heartbeat)), 0) FROM job "
            "WHERE job_type = 'SchedulerJob'",
            db=self.d.db,
        )
        return float(out or 0)

    def heartbeat_after(self, since: float, timeout: float = UP_TIMEOUT) -> float | None:
        """When the loop first heartbeats after ``since`` (host clock); None if not in time."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                beat = self.last_heartbeat()
            except RuntimeError:  # psql could not connect yet
                beat = 0.0
            if beat > since:
                return beat
            time.sleep(POLL)
        say(f"{self.unit}: no heartbeat within {timeout:g}s\n{self.d.journal_tail(self.unit, 15)}")
        return None

    def watchdog_kill(self, cursor: str) -> float | None:
        for entry in self.d.journal_json(cursor, self.unit):
            if "Watchdog timeout" in str(entry.get("MESSAGE", "")):
                return int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        return None

    def start(self) -> dict:
        self.d.sb.systemctl("reset-failed", self.unit, check=False)
        t0 = time.time()
        self.d.sb.systemctl("start", self.unit)
        returned = time.time()
        return {
            "start_returned_s": since(t0, returned),
            "first_heartbeat_s": since(t0, self.heartbeat_after(t0)),
        }

    def frozen(self, seconds: float) -> dict:
        main = self.props()["MainPID"]
        cursor = self.d.cursor()
        self.d.pg.freeze()
        frozen = time.time()
        seen_restart = None
        states = set()
        while time.time() - frozen < seconds:
            p = self.props()
            states.add(f"{p['ActiveState']}/{p['SubState']}")
            if seen_restart is None and p["MainPID"] not in (main, "0"):
                seen_restart = time.time()
            time.sleep(POLL)
        self.d.pg.thaw()
        thawed = time.time()
        return {
            "watchdog_kill_after_s": since(frozen, self.watchdog_kill(cursor)),
            "new_main_process_after_s": since(frozen, seen_restart),
            "states_while_frozen": sorted(states),
            "heartbeat_after_thaw_s": since(thawed, self.heartbeat_after(thawed)),
        }

    def outage(self, seconds: float) -> dict:
        restarts = int(self.props()["NRestarts"])
        self.d.pg.stop("immediate")
        stopped = time.time()
        main = self.props()["MainPID"]
        exited = None
        while time.time() - stopped < seconds:
            if exited is None and self.props()["MainPID"] != main:
                exited = time.time()
            time.sleep(POLL)
        self.d.pg.start()
        back = time.time()
        beat = self.heartbeat_after(back)
        return {
            "main_exit_after_s": since(stopped, exited),
            "restarts_during_outage": int(self.props()["NRestarts"]) - restarts,
            "heartbeat_after_db_back_s": since(back, beat),
            "result": self.props()["Result"],
        }


def measure(d: Deployment, unit: str, args: argparse.Namespace) -> dict:
    bench = Bench(d, unit)
    say(f"{unit}: start")
    figures = {"start": bench.start()}
    say(f"{unit}: database frozen for {args.freeze:g}s")
    figures["frozen"] = bench.frozen(args.freeze)
    say(f"{unit}: database stopped for {args.outage:g}s")
    figures["outage"] = bench.outage(args.outage)
    d.sb.systemctl("stop", unit)
    return figures


def fmt(value, unit: str = "s") -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.1f} {unit}".strip()
    return str(value)


def table(results: dict, args: argparse.Namespace) -> str:
    up, ours = results["upstream"], results["ours"]
    rows = [
        ("`systemctl start` returns", "start", "start_returned_s"),
        ("start → first loop heartbeat", "start", "first_heartbeat_s"),
        (f"DB frozen {args.freeze:g} s: watchdog kill after", "frozen", "watchdog_kill_after_s"),
        ("DB frozen: new main process after", "frozen", "new_main_process_after_s"),
        ("DB frozen: unit states seen", "frozen", "states_while_frozen"),
        ("thaw → heartbeat", "frozen", "heartbeat_after_thaw_s"),
        (f"DB stopped {args.outage:g} s: main process exits after", "outage", "main_exit_after_s"),
        ("DB stopped: restarts during the outage", "outage", "restarts_during_outage"),
        ("DB back → heartbeat", "outage", "heartbeat_after_db_back_s"),
    ]
    lines = [f"| | upstream Type=simple | ours (WatchdogSec={args.watchdog:g}s) |", "|---|---|---|"]
    for label, group, key in rows:
        a, b = up[group][key], ours[group][key]
        show = (lambda v: ", ".join(v)) if isinstance(a, list) else fmt
        lines.append(f"| {label} | {show(a)} | {show(b)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--watchdog", type=float, default=10.0, help="WatchdogSec= of ours (default: %(default)s)"
    )
    parser.add_argument(
        "--freeze", type=float, default=30.0, help="seconds the database stays frozen (default: %(default)s)"
    )
    parser.add_argument(
        "--outage", type=float, default=30.0, help="seconds the database stays stopped (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: it boots a container with systemd-nspawn")
    if args.freeze <= args.watchdog:
        parser.error("--freeze must be longer than --watchdog, or there is no kill to measure")

    pg = PgCluster().init()
    sb = Sandbox(name=f"afsdbench{os.getpid()}")
    try:
        pg.start()
        say("migrating the metadata database")
        create_migrated_database(pg, "airflow")
        say("booting systemd in the harness, installing both units")
        sb.up()
        d = Deployment(sb, pg, "airflow")
        d.install(watchdog=f"{args.watchdog:g}s")
        sb.write_file(f"/etc/systemd/system/{UPSTREAM}", upstream_unit(pg.url("airflow")))
        sb.daemon_reload()
        sb.systemctl("start", "airflow-db-migrate.service")  # ours Requires= it
        results = {
            "airflow": d.airflow("version").strip(),
            "watchdog_seconds": args.watchdog,
            "freeze_seconds": args.freeze,
            "outage_seconds": args.outage,
            "upstream": measure(d, UPSTREAM, args),
            "ours": measure(d, SCHEDULER, args),
        }
        print(table(results, args))
        print(json.dumps(results))
        return 0
    finally:
        sb.down()
        pg.remove()


if __name__ == "__main__":
    sys.exit(main())
