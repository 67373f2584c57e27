"""The whole installation beside what users run instead, in one run, as one table.

As root, from the repository root, with the virtualenv under test:

    .venvs/airflow-3.3.2/bin/python -m bench [--quick] [--idle S] [--tasks N] [--budget S]

One deployment of Airflow on a private PostgreSQL under a real systemd booted in the test
harness (tests/harness: sandbox, deployment, pgcluster), the units installed the way an operator
does (`install-units`, shipped WatchdogSec=30s unless --watchdog), Airflow's default heartbeats.
Each row is ours beside the alternative, measured in the same run on the same machine, so that
the ratio means something on a shared 2-core machine where absolute times are noise:

* cold start: `systemctl start airflow.target` to every unit READY and to a one-task @once DAG
  succeeding (the run's end_date), vs `airflow standalone` (a transient unit without sandbox,
  the same settings, a fresh clone of the same migrated database) to the same DAG succeeding;
* idle footprint: PSS and RSS summed over every process, and CPU per hour (the cgroups'
  cpu.stat) of the four services idle for --idle seconds, vs `airflow standalone` alike;
* hang caught: seconds from the fault to systemd's "Watchdog timeout" (and to the new main
  process) for our units, vs upstream's Type=simple scheduler unit under the same fault (never,
  within --budget seconds), vs the official Helm chart's liveness probe on its own schedule:
  the probe command is run against the hung component and its failure timed; the kill time is
  that plus (failureThreshold - 1) x periodSeconds plus the phase of the first probe (0 to
  periodSeconds), given as a range. Faults: scheduler, every PostgreSQL process SIGSTOPped;
  dag-processor and api-server, their main process SIGSTOPped; triggerer, a trigger blocking
  its event loop; Celery worker (last: it switches to the CeleryExecutor), Redis SIGSTOPped.
  Upstream ships no unit for the dag-processor, triggerer or api-server, and its Type=simple
  units have no watchdog: the scheduler's stands for them all;
* cost of liveness: CPU seconds per hour spent proving liveness. Ours: the job loops' notify
  path (JobLoop, Probe, Notifier sending to a real socket) run in-process over simulated hours
  of an idle scheduler, its thread's CPU time; the api-server's health request (server-side CPU
  per request, measured on the running unit) times its requests an hour (one every quarter of
  its WatchdogSec= once READY: 480 with the shipped 30 s). Helm: the probe
  command's CPU per call (systemd's accounting of a transient unit) times its calls per hour;
* task throughput: --tasks no-op tasks in one DAG run (LocalExecutor, parallelism 4), run start
  to end, under our hardened units vs the same four commands started by hand as the airflow
  user without systemd;
* restart to work: scheduler SIGKILL to READY again and to the next task running, ours vs
  upstream's Type=simple unit (Restart=always, RestartSec=5s).

Settings of the Helm chart come from apache/airflow chart/values.yaml (see HELM below). `--quick`
is the smoke run CI executes: the same rows with a short watchdog, short windows and few tasks.
The last line of the output is JSON with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Upstream's scheduler unit (apache/airflow scripts/systemd) with this machine's paths, as the
# unit bench runs it.
from bench.unit_bench import UPSTREAM, upstream_unit  # noqa: E402
from tests.harness.airflow_env import create_migrated_database  # noqa: E402
from tests.harness.deployment import SCHEDULER, SERVICES_3, VENV, Deployment, worker  # noqa: E402
from tests.harness.pgcluster import PgCluster  # noqa: E402
from tests.harness.sandbox import Sandbox  # noqa: E402
from tests.harness.waiting import poll_until  # noqa: E402

STANDALONE = "afsd-bench-standalone.service"
POLL = 0.2
ONCE_DAG = "afsd_bench_once"  # @once, one task: the cold start's work
ONE_DAG = "afsd_bench_one"  # one task, triggered: restart to work
MANY_DAG = "afsd_bench_many"  # --tasks tasks, triggered: throughput
# Retries: at a cold start the scheduler may queue the task before the api-server (which tasks
# report to) answers, and on a loaded machine the api-server may miss its watchdog and restart;
# a try then fails on "connection refused". The figures count the tasks retried.
DAG_TEXT = """\
import datetime

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

RETRIES = {{"retries": 6, "retry_delay": datetime.timedelta(seconds=10)}}

with DAG({dag_id!r}, schedule={schedule!r}, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
         max_active_tasks={tasks}, default_args=RETRIES):
    for i in range({tasks}):
        BashOperator(task_id=f"noop_{{i}}", bash_command="true")
"""
BLOCK_DAG = "afsd_bench_block"  # one deferred task: the triggerer's fault
BLOCKED_ONCE = "/var/lib/airflow/afsd_bench_blocked"
# The triggerer's fault: a trigger whose run() makes a blocking call, which stops the whole
# event loop of the triggerer's runner process (every other trigger with it). It blocks once
# (a file marks it): a triggerer restarted after the fault then completes it, and the run ends.
# In the plugins folder, which every Airflow process has on sys.path.
TRIGGER_MODULE_TEXT = f"""\
import os
import time

from airflow.triggers.base import BaseTrigger, TriggerEvent


class BlockingTrigger(BaseTrigger):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def serialize(self):
        return ("afsd_bench_trigger.BlockingTrigger", {{"seconds": self.seconds}})

    async def run(self):
        if not os.path.exists({BLOCKED_ONCE!r}):
            open({BLOCKED_ONCE!r}, "w").close()
            time.sleep(self.seconds)  # a blocking call in async code: the fault
        yield TriggerEvent(True)
"""
BLOCK_DAG_TEXT = f"""\
import pendulum
from afsd_bench_trigger import BlockingTrigger
from airflow.sdk import DAG, BaseOperator


class Defer(BaseOperator):
    def execute(self, context):
        self.defer(trigger=BlockingTrigger(240), method_name="resume")

    def resume(self, context, event=None):
        return None


with DAG({BLOCK_DAG!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    Defer(task_id="block")
"""
TRIGGERER = "airflow-triggerer.service"
# [triggerer] runner_health_check_threshold (Airflow >= 3.2.2, default 30 s): how long the
# triggerer's main process lets its runner's event loop stay silent before it stops writing
# its job heartbeat. Our watchdog pings only on a written heartbeat, so it acts this much later.
RUNNER_SILENCE = 30.0

# Airflow's defaults, not the test tiers' 1 s heartbeats: the bench measures what ships.
BENCH_SETTINGS = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "5",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "5",
}


@dataclass(frozen=True)
class Probe:
    """One liveness probe of the official Helm chart, with where each setting comes from."""

    command: tuple[str, ...]  # exec probe: the command; httpGet: ("GET", path)
    initial_delay: int
    period: int
    timeout: int
    failure_threshold: int


# apache/airflow chart/values.yaml at d6ba4817 (defaultAirflowTag 3.1.3): scheduler, triggerer,
# dagProcessor and workers .livenessProbe {initialDelaySeconds: 10, timeoutSeconds: 20,
# failureThreshold: 5, periodSeconds: 60}; apiServer.livenessProbe {15, 5, 5, 10}. The commands:
# chart/templates/_helpers.yaml's *_liveness_check_command (`airflow jobs check --job-type ...
# --local` for Airflow >= 2.5, run through the image's /entrypoint with
# CONNECTION_CHECK_MAX_COUNT=0 AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR); the api-server's is an
# httpGet of /api/v2/monitor/health (chart/templates/api-server/api-server-deployment.yaml at
# b9584335).
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"  # celery_executor_namespace
HELM = {
    "airflow-scheduler": Probe(("jobs", "check", "--job-type", "SchedulerJob", "--local"), 10, 60, 20, 5),
    "airflow-dag-processor": Probe(
        ("jobs", "check", "--job-type", "DagProcessorJob", "--local"), 10, 60, 20, 5
    ),
    "airflow-triggerer": Probe(("jobs", "check", "--job-type", "TriggererJob", "--local"), 10, 60, 20, 5),
    "airflow-api-server": Probe(("GET", "/api/v2/monitor/health"), 15, 10, 5, 5),
    # chart/templates/workers/worker-deployment.yaml: `python -m celery --app
    # {celery_executor_namespace} inspect ping -d celery@$(hostname)`; workers.livenessProbe in
    # values.yaml {initialDelaySeconds: 10, timeoutSeconds: 20, failureThreshold: 5, periodSeconds: 60}.
    "airflow-celery-worker": Probe(
        ("python", "-m", "celery", "--app", CELERY_APP, "inspect", "ping", "-d", "celery@{hostname}"),
        10,
        60,
        20,
        5,
    ),
}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def timespan(text: str) -> float:
    """Seconds of a systemd time span as systemd-run prints it: "2.345s", "1min 3.2s", "870ms"."""
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in re.findall(r"([\d.]+)\s*(us|ms|min|h|s)\b", text))


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    return poll_until(predicate, timeout, what, every=POLL, error=TimeoutError)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pg = PgCluster().init()
        self.sb = Sandbox(name=f"afsdbench{os.getpid()}")
        self.d: Deployment | None = None
        self.by_hand: subprocess.Popen | None = None
        self.figures: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    # --- set-up --------------------------------------------------------------------------
    def setup(self) -> None:
        self.pg.start()
        say("migrating the metadata database (one template, a clone per contender)")
        create_migrated_database(self.pg, "airflow_template")
        for db in ("airflow", "standalone"):
            self.pg.sql(f"CREATE DATABASE {db} TEMPLATE airflow_template")
        say("booting systemd in the harness, installing the units")
        self.sb.up()
        d = self.d = Deployment(self.sb, self.pg, "airflow")
        d.install(watchdog=f"{self.args.watchdog:g}s")
        d.sb.write_file(f"/etc/systemd/system/{UPSTREAM}", upstream_unit(self.pg.url("airflow")))
        # Every row's fault hits the other services too (a frozen database stops every job loop,
        # and their watchdogs restart them): within the shipped StartLimitIntervalSec=10min, the
        # triggerer's own hang was its 5th start and hit StartLimitBurst=5 (CI, 2026-12-02: the
        # three database freezes before it had restarted it each). The limit is not a row here.
        d.drop_in("50-bench-start-limit.conf", "[Unit]\nStartLimitBurst=50\n")
        if self.args.quick:
            # A smoke run: the test tiers' 1 s heartbeats under the short watchdog of the job
            # loops (the api-server keeps its 30 s); upstream's stop after a SIGKILL bounded at
            # 10 s instead of systemd's default 90 s. Its figures say that the rows work.
            d.drop_in(
                "50-bench-quick.conf", "[Service]\nTimeoutStopSec=10s\n", UPSTREAM.removesuffix(".service")
            )
        else:
            d.configure(**BENCH_SETTINGS)
        d.sb.daemon_reload()
        d.sb.systemctl("enable", *SERVICES_3)
        d.sb.exec("install", "-d", "-o", "airflow", "-g", "airflow", "-m", "0750", "/var/lib/airflow")
        d.sb.exec("install", "-d", "-o", "airflow", "-g", "airflow", "-m", "0750", "/var/lib/airflow/dags")
        d.sb.exec("install", "-d", "-o", "airflow", "-g", "airflow", "-m", "0750", "/var/lib/airflow/plugins")
        d.sb.write_file("/var/lib/airflow/plugins/afsd_bench_trigger.py", TRIGGER_MODULE_TEXT)
        d.sb.write_file(f"/var/lib/airflow/dags/{BLOCK_DAG}.py", BLOCK_DAG_TEXT)
        for dag_id, schedule, tasks in (
            (ONCE_DAG, "@once", 1),
            (ONE_DAG, None, 1),
            (MANY_DAG, None, self.args.tasks),
        ):
            text = DAG_TEXT.format(dag_id=dag_id, schedule=schedule, tasks=tasks)
            d.sb.write_file(f"/var/lib/airflow/dags/{dag_id}.py", text)
        self.figures["airflow"] = d.airflow("version").strip()

    def cleanup(self) -> None:
        if self.by_hand is not None and self.by_hand.poll() is None:
            self.stop_by_hand()
        self.sb.down()
        self.pg.remove()

    # --- helpers -------------------------------------------------------------------------
    def deployment(self, db: str) -> Deployment:
        """The deployment's view of database DB (the standalone has a database of its own)."""
        d = Deployment(self.sb, self.pg, db)
        d.api_port = self.d.api_port
        return d

    def run_end(self, db: str, dag_id: str, run_id: str | None = None) -> float | None:
        """Epoch of the end of DAG_ID's (RUN_ID's) successful run in DB, None while it has none."""
        where = f"dag_id = '{dag_id}' AND state = 'success'" + (f" AND run_id = '{run_id}'" if run_id else "")
        out = self.pg.sql(f"SELECT extract(epoch FROM max(end_date)) FROM dag_run WHERE {where}", db)
        return float(out) if out else None

    def wait_run(self, db: str, dag_id: str, run_id: str | None, timeout: float) -> float:
        """Epoch of the end of the run's success; an error as soon as it failed."""

        def ended():
            where = f"dag_id = '{dag_id}'" + (f" AND run_id = '{run_id}'" if run_id else "")
            states = self.pg.sql(f"SELECT state FROM dag_run WHERE {where}", db).split()
            if "failed" in states:
                d = self.d
                tail = d.journal_tail(SCHEDULER, 30) + d.journal_tail("airflow-api-server.service", 30)
                raise RuntimeError(f"a run of {dag_id} failed in {db}; the journal:\n{tail}")
            return self.run_end(db, dag_id, run_id)

        return wait_for(ended, timeout, f"{dag_id} to succeed in {db}")

    def settled(self) -> None:
        """Every service active, none restarted for 10 s, and the api-server answering (the
        faults before may have left one restarting, and a unit still starting has no watchdog
        yet), so that the next row does not measure a recovery."""
        units = [f"{service}.service" for service in SERVICES_3]

        def steady():
            for unit in units:
                self.back_up(unit)
            before = [self.d.props(u)["MainPID"] for u in units]
            time.sleep(10)
            return before == [self.d.props(u)["MainPID"] for u in units]

        wait_for(steady, 300, "every service to stay up for 10 s")
        wait_for(self.api_answers, 180, "the api-server to answer")

    def api_answers(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.d.api_port}/api/v2/monitor/health"
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def retried(self, db: str, dag_id: str, run_id: str | None = None) -> int:
        """How many of the run's tasks needed more than one try."""
        where = f"dag_id = '{dag_id}'" + (f" AND run_id = '{run_id}'" if run_id else "")
        return int(self.pg.sql(f"SELECT count(*) FROM task_instance WHERE {where} AND try_number > 1", db))

    def run_span(self, db: str, dag_id: str, run_id: str) -> float:
        out = self.pg.sql(
            "SELECT extract(epoch FROM end_date - start_date) FROM dag_run "
            f"WHERE dag_id = '{dag_id}' AND run_id = '{run_id}' AND state = 'success'",
            db,
        )
        return float(out)

    def first_task_start(self, db: str, dag_id: str, run_id: str) -> float | None:
        out = self.pg.sql(
            "SELECT extract(epoch FROM min(start_date)) FROM task_instance "
            f"WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'",
            db,
        )
        return float(out) if out else None

    def cgroups(self, units: list[str]) -> list[str]:
        return [self.d.props(u)["ControlGroup"] for u in units]

    def cpu_seconds(self, cgroups: list[str]) -> float:
        script = 'for g; do sed -n "s/^usage_usec //p" /sys/fs/cgroup$g/cpu.stat; done'
        out = self.sb.exec("sh", "-c", script, "sh", *cgroups).stdout
        return sum(int(x) for x in out.split()) / 1e6

    def memory(self, cgroups: list[str]) -> dict:
        script = (
            "for g; do for p in $(cat /sys/fs/cgroup$g/cgroup.procs); do "
            "sed -n 's/^\\(Rss\\|Pss\\): *\\([0-9]*\\) kB/\\1 \\2/p' /proc/$p/smaps_rollup 2>/dev/null; "
            "done; done"
        )
        out = self.sb.exec("sh", "-c", script, "sh", *cgroups).stdout
        kib = {"Rss": 0, "Pss": 0}
        for line in out.splitlines():
            key, value = line.split()
            kib[key] += int(value)
        return {"pss_mib": round(kib["Pss"] / 1024, 1), "rss_mib": round(kib["Rss"] / 1024, 1)}

    def idle(self, cgroups: list[str]) -> dict:
        time.sleep(5)  # the run's last task processes are gone
        cpu0, t0 = self.cpu_seconds(cgroups), time.monotonic()
        time.sleep(self.args.idle)
        cpu1, t1 = self.cpu_seconds(cgroups), time.monotonic()
        return {"cpu_s_per_h": round((cpu1 - cpu0) / (t1 - t0) * 3600, 1), **self.memory(cgroups)}

    def run_probe(self, name: str, probe: Probe) -> dict:
        """The Helm probe's command once, inside, bounded by its timeoutSeconds: rc, wall, CPU."""
        if probe.command[0] == "GET":
            url = f"http://127.0.0.1:{self.d.api_port}{probe.command[1]}"
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=probe.timeout) as response:
                    rc = 0 if 200 <= response.status < 400 else 1
            except OSError:
                rc = 1
            return {"rc": rc, "wall_s": round(time.monotonic() - t0, 2), "cpu_s": None}
        argv = [
            "systemd-run",
            "--wait",
            "--collect",
            "--property=CPUAccounting=yes",
            f"--property=RuntimeMaxSec={probe.timeout}",
            "--setenv=AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR",
            *self.d._service_properties(),
            *self.probe_argv(probe),
        ]
        t0 = time.monotonic()
        done = self.sb.exec(*argv, check=False)
        wall = time.monotonic() - t0
        cpu = re.search(r"CPU time consumed: (.*)", done.stderr)
        return {
            "rc": done.returncode,
            "wall_s": round(wall, 2),
            "cpu_s": round(timespan(cpu[1]), 3) if cpu else None,
        }

    def probe_argv(self, probe: Probe) -> list[str]:
        """The probe's command line inside: `airflow ...`, or `python ...` (the worker's), with
        the container's host name where the chart has $(hostname)."""
        first, *rest = probe.command
        if first == "python":
            hostname = self.sb.exec("hostname").stdout.strip()
            return [str(VENV / "bin" / "python"), *(arg.format(hostname=hostname) for arg in rest)]
        return [str(VENV / "bin" / "airflow"), *probe.command]

    # --- rows ----------------------------------------------------------------------------
    def cold_start_ours(self) -> None:
        say("cold start: systemctl start airflow.target")
        d = self.d
        t0 = time.time()
        d.sb.systemctl("start", "airflow.target")
        ready = time.time()
        states = {s: d.state(f"{s}.service") for s in SERVICES_3}
        assert all(v == "active/running" for v in states.values()), states
        end = self.wait_run("airflow", ONCE_DAG, None, 300)
        self.figures["cold_start"] = {
            "ours_ready_s": round(ready - t0, 1),
            "ours_dag_s": round(end - t0, 1),
            "ours_retried_tasks": self.retried("airflow", ONCE_DAG),
        }
        say(f"idle footprint of airflow.target for {self.args.idle:g}s")
        self.figures["idle"] = {"ours": self.idle(self.cgroups([f"{s}.service" for s in SERVICES_3]))}

    def cold_start_standalone(self) -> None:
        say("cold start: airflow standalone")
        sd = self.deployment("standalone")
        t0 = time.time()
        self.sb.exec(
            "systemd-run",
            "--quiet",
            "--collect",
            f"--unit={STANDALONE}",
            *sd._service_properties(),
            # It runs its components as `airflow ...` from PATH: the virtualenv activated.
            f"--setenv=PATH={VENV}/bin:/usr/local/bin:/usr/bin:/bin",
            f"--setenv=VIRTUAL_ENV={VENV}",
            str(VENV / "bin" / "airflow"),
            "standalone",
        )
        try:
            end = self.wait_run("standalone", ONCE_DAG, None, 300)
            self.figures["cold_start"]["standalone_dag_s"] = round(end - t0, 1)
            self.figures["cold_start"]["standalone_retried_tasks"] = self.retried("standalone", ONCE_DAG)
            say(f"idle footprint of airflow standalone for {self.args.idle:g}s")
            self.figures["idle"]["standalone"] = self.idle(self.cgroups([STANDALONE]))
        finally:
            self.sb.systemctl("stop", STANDALONE, check=False)

    def hang(
        self, units: list[str], fault: Callable[[], None], undo: Callable[[], None], later: float = 0.0
    ) -> dict:
        """Fault, then wait up to --budget seconds for systemd to act on each of UNITS: the
        watchdog's kill ("Watchdog timeout" in the journal) and the new main process, each in
        seconds from the fault (None: not within the budget). LATER: seconds the component
        itself takes to stop proving progress after this fault (the budget grows by it)."""
        d = self.d
        mains = {u: d.props(u)["MainPID"] for u in units}
        watchdog = max(timespan(d.sb.show(u, "WatchdogUSec")) for u in units)
        budget = max(self.args.budget, watchdog + 20) + later  # the kill, RestartSec=10s, a margin
        cursor = d.cursor()
        fault()  # returns once the fault is in place (a trigger running: once it is assigned)
        t0 = time.time()
        caught: dict[str, float | None] = dict.fromkeys(units)
        restarted: dict[str, float | None] = dict.fromkeys(units)
        try:
            while time.time() - t0 < budget and None in restarted.values():
                for u in units:
                    if caught[u] is None:
                        for entry in d.journal_json(cursor, u):
                            if "Watchdog timeout" in str(entry.get("MESSAGE", "")):
                                caught[u] = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - t0
                    if restarted[u] is None and d.props(u)["MainPID"] not in (mains[u], "0"):
                        restarted[u] = time.time() - t0
                time.sleep(POLL)
        finally:
            undo()
        return {
            u: {
                "caught_s": None if caught[u] is None else round(caught[u], 1),
                "new_process_s": None if restarted[u] is None else round(restarted[u], 1),
                "budget_s": budget,
            }
            for u in units
        }

    def helm_after(
        self, name: str, fault: Callable[[], None], undo: Callable[[], None], budget: float = 120
    ) -> dict:
        """The Helm probe against the same fault: how long after the fault a probe started then
        fails (started every 2 s until one fails), and what that makes of the chart's schedule."""
        probe = HELM[name]
        fault()
        t0 = time.monotonic()
        try:
            while True:
                result = self.run_probe(name, probe)
                if result["rc"] != 0:
                    break
                if time.monotonic() - t0 > budget:
                    return {"failed_after_s": None}
                time.sleep(2)
        finally:
            undo()
        detected = time.monotonic() - t0
        first = detected + (probe.failure_threshold - 1) * probe.period
        return {
            "failed_after_s": round(detected, 1),
            "probe_failure": result,
            "kill_after_s": [round(first, 1), round(first + probe.period, 1)],
        }

    def hangs(self) -> None:
        d = self.d
        rows = self.figures["hang"] = {}

        def freeze_db():
            d.pg.freeze()

        def thaw_db():
            d.pg.thaw()

        # The whole component stops (every process of the unit), not only its main process: the
        # api-server's HTTP workers, the dag-processor's parsers.
        def sigstop(unit):
            return lambda: d.sb.systemctl("kill", "--signal=SIGSTOP", unit)

        def sigcont(unit):
            return lambda: d.sb.systemctl("kill", "--signal=SIGCONT", unit, check=False)

        self.settled()
        say("hang, scheduler: the database frozen, our unit")
        rows["airflow-scheduler"] = {"ours": self.hang([SCHEDULER], freeze_db, thaw_db)[SCHEDULER]}
        self.back_up(SCHEDULER)
        say("hang, scheduler: the Helm probe against the frozen database")
        rows["airflow-scheduler"]["helm"] = self.helm_after("airflow-scheduler", freeze_db, thaw_db)
        self.back_up(SCHEDULER)
        # Both at once, in one window: each its own fault, each its own watchdog.
        units = ["airflow-dag-processor.service", "airflow-api-server.service"]
        self.settled()
        say("hang, dag-processor and api-server: SIGSTOP, our units")
        caught = self.hang(
            units, lambda: [sigstop(u)() for u in units], lambda: [sigcont(u)() for u in units]
        )
        for unit in units:
            rows[unit.removesuffix(".service")] = {"ours": caught[unit]}
            self.back_up(unit)
        say("hang, api-server: SIGSTOP, the Helm probe")
        unit = "airflow-api-server.service"
        rows["airflow-api-server"]["helm"] = self.helm_after(
            "airflow-api-server", sigstop(unit), sigcont(unit)
        )
        self.back_up(unit)
        # The Helm probe watches plain `airflow dag-processor` (as the chart runs it), which no
        # watchdog of ours restarts while the probe is still deciding.
        say("hang, dag-processor: SIGSTOP, the Helm probe against plain `airflow dag-processor`")
        d.sb.systemctl("stop", "airflow-dag-processor.service")
        plain = self.plain_unit("dag-processor")
        try:
            wait_for(lambda: self.job_alive("DagProcessorJob"), 120, "plain dag-processor's heartbeat")
            rows["airflow-dag-processor"]["helm"] = self.helm_after(
                "airflow-dag-processor", sigstop(plain), sigcont(plain)
            )
        finally:
            d.sb.systemctl("stop", plain, check=False)
            self.start("airflow-dag-processor.service")
        say("hang, scheduler: the database frozen, upstream's Type=simple unit")
        d.sb.systemctl("stop", SCHEDULER)
        self.start(UPSTREAM)
        self.wait_heartbeat(time.time(), UPSTREAM)
        rows["airflow-scheduler"]["upstream"] = self.hang([UPSTREAM], freeze_db, thaw_db)[UPSTREAM]
        rows["airflow-scheduler"]["upstream"]["state"] = d.state(UPSTREAM)
        d.sb.systemctl("stop", UPSTREAM)
        self.start(SCHEDULER)
        self.triggerer_hang()

    def blocking_trigger(self) -> None:
        """Trigger the run whose task defers to the blocking trigger; return once a triggerer
        has taken the trigger (it starts running it within its next loop, about a second)."""
        d = self.d
        d.sb.exec("rm", "-f", BLOCKED_ONCE)
        self._block_run = d.trigger(BLOCK_DAG)
        wait_for(
            lambda: d.sql("SELECT count(*) FROM trigger WHERE triggerer_id IS NOT NULL") != "0",
            180,
            "the blocking trigger to be assigned to a triggerer",
        )

    def triggerer_hang(self) -> None:
        d = self.d
        parsed = f"SELECT count(*) FROM dag WHERE dag_id = '{BLOCK_DAG}'"
        wait_for(lambda: d.sql(parsed) == "1", 120, BLOCK_DAG)
        d.sql(f"UPDATE dag SET is_paused = false WHERE dag_id = '{BLOCK_DAG}'")
        rows = self.figures["hang"]
        self.settled()
        say("hang, triggerer: a trigger blocking the event loop, our unit")
        caught = self.hang([TRIGGERER], self.blocking_trigger, lambda: None, later=RUNNER_SILENCE)
        rows["airflow-triggerer"] = {"ours": caught[TRIGGERER]}
        self.back_up(TRIGGERER)
        # The restarted triggerer completes the trigger (it blocks once): the run succeeds.
        self.wait_run("airflow", BLOCK_DAG, self._block_run, 300)
        say("hang, triggerer: the Helm probe against plain `airflow triggerer`")
        d.sb.systemctl("stop", TRIGGERER)
        plain = self.plain_unit("triggerer")
        try:
            wait_for(lambda: self.job_alive("TriggererJob"), 120, "plain triggerer's heartbeat")
            rows["airflow-triggerer"]["helm"] = self.helm_after(
                "airflow-triggerer", self.blocking_trigger, lambda: None, budget=RUNNER_SILENCE + 120
            )
        finally:
            # SIGKILL: its runner sits in the blocking call and would not stop on SIGTERM.
            d.sb.systemctl("kill", "--signal=SIGKILL", plain, check=False)
            d.sb.systemctl("stop", plain, check=False)
            self.start(TRIGGERER)
        self.wait_run("airflow", BLOCK_DAG, self._block_run, 300)

    def celery(self) -> None:
        """The Celery worker's hang: its broker frozen. Last: it switches the installation to
        the CeleryExecutor (README "CeleryExecutor workers", as test_celery.py does)."""
        d = self.d
        rows = self.figures.setdefault("hang", {})
        broker = d.install_broker(watchdog=f"{self.args.watchdog:g}s", drain=30)
        d.switch_executor("CeleryExecutor", AIRFLOW__CELERY__BROKER_URL=broker.url)
        unit = worker("default")
        d.sb.systemctl("enable", "--now", unit)  # Type=notify: back once READY
        d.sb.systemctl("restart", "airflow.target")
        self.settled()
        self.back_up(unit)
        say("hang, Celery worker: the broker frozen, our unit")
        rows["airflow-celery-worker"] = {"ours": self.hang([unit], broker.freeze, broker.thaw)[unit]}
        self.back_up(unit)
        say("hang, Celery worker: the broker frozen, the Helm probe against plain `airflow celery worker`")
        d.sb.systemctl("disable", "--now", unit)
        plain = self.plain_unit("celery", "worker")
        probe = HELM["airflow-celery-worker"]
        try:
            wait_for(
                lambda: self.run_probe("airflow-celery-worker", probe)["rc"] == 0,
                180,
                "the plain worker's pong",
            )
            rows["airflow-celery-worker"]["helm"] = self.helm_after(
                "airflow-celery-worker", broker.freeze, broker.thaw
            )
        finally:
            broker.thaw()
            d.sb.systemctl("stop", plain, check=False)

    def plain_unit(self, *command: str) -> str:
        """`airflow COMMAND...` as a transient unit without watchdog or sandbox; its name."""
        unit = f"afsd-bench-plain-{'-'.join(command)}.service"
        self.sb.exec(
            "systemd-run", "--quiet", "--collect", f"--unit={unit}", *self.d._service_properties(),
            str(VENV / "bin" / "airflow"), *command,
        )  # fmt: skip
        return unit

    def job_alive(self, job_type: str) -> bool:
        out = self.pg.sql(
            f"SELECT count(*) FROM job WHERE job_type = '{job_type}' AND state = 'running' "
            "AND latest_heartbeat > now() - interval '5 seconds'",
            "airflow",
        )
        return out != "0"

    def start(self, unit: str) -> None:
        # The bench starts a unit more often than its StartLimitBurst= allows in 10 minutes.
        self.sb.systemctl("reset-failed", unit, check=False)
        self.sb.systemctl("start", unit)

    def back_up(self, unit: str) -> None:
        d = self.d
        d.wait_for(lambda: d.state(unit) == "active/running", 180, f"{unit} back", unit=unit)

    def wait_heartbeat(self, since: float, unit: str) -> float:
        def beat():
            out = self.pg.sql(
                "SELECT coalesce(extract(epoch FROM max(latest_heartbeat)), 0) FROM job "
                "WHERE job_type = 'SchedulerJob'",
                "airflow",
            )
            return float(out) if float(out) > since else None

        return wait_for(beat, 180, f"a scheduler heartbeat from {unit}")

    def costs(self) -> None:
        say("cost of liveness: the Helm probe's command on a healthy installation, and ours")
        calls = [
            self.run_probe("airflow-scheduler", HELM["airflow-scheduler"])
            for _ in range(1 if self.args.quick else 3)
        ]
        assert all(c["rc"] == 0 for c in calls), f"the Helm probe fails on a healthy scheduler: {calls}"
        per_call = statistics.median(c["cpu_s"] for c in calls)
        per_hour = 3600 / HELM["airflow-scheduler"].period
        cost = self.figures["liveness_cost"] = {
            "helm_job_probe_cpu_per_call_s": per_call,
            "helm_job_probe_cpu_s_per_h": round(per_call * per_hour, 1),
            "ours_job_loop_cpu_s_per_h": notify_path_cpu_per_hour(self.args.watchdog),
        }
        per_request = self.health_request_cpu()
        cost["health_request_server_cpu_ms"] = round(per_request * 1000, 2)
        # services/http.py: a request every quarter of the api-server's WatchdogSec= once READY
        every = timespan(self.d.sb.show("airflow-api-server.service", "WatchdogUSec")) / 4
        cost["ours_api_server_requests_per_h"] = round(3600 / every)
        cost["ours_api_server_cpu_s_per_h"] = round(per_request * 3600 / every, 1)
        cost["helm_api_server_cpu_s_per_h"] = round(per_request * 3600 / HELM["airflow-api-server"].period, 1)

    def health_request_cpu(self, n: int = 100) -> float:
        """Server-side CPU of one health request: the api-server cgroup's CPU during N requests,
        less its CPU over as long a time at rest."""
        cgroup = self.cgroups(["airflow-api-server.service"])
        url = f"http://127.0.0.1:{self.d.api_port}/api/v2/monitor/health"
        cpu0, t0 = self.cpu_seconds(cgroup), time.monotonic()
        for _ in range(n):
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
        cpu1, t1 = self.cpu_seconds(cgroup), time.monotonic()
        time.sleep(t1 - t0)
        cpu2, t2 = self.cpu_seconds(cgroup), time.monotonic()
        rest = (cpu2 - cpu1) / (t2 - t1) * (t1 - t0)
        return max(0.0, (cpu1 - cpu0) - rest) / n

    def restart_to_work(self, unit: str) -> dict:
        """SIGKILL UNIT's main process while a one-task run waits (its DAG paused until the kill):
        seconds to a new main process, to READY again, and to the task running."""
        d = self.d
        d.sql(f"UPDATE dag SET is_paused = true WHERE dag_id = '{ONE_DAG}'")
        run_id = d.trigger(ONE_DAG)
        main = d.props(unit)["MainPID"]
        t0 = time.time()
        d.sb.systemctl("kill", "--signal=SIGKILL", "--kill-whom=main", unit)
        d.sql(f"UPDATE dag SET is_paused = false WHERE dag_id = '{ONE_DAG}'")

        def active_again():
            p = d.props(unit)
            return p["MainPID"] not in (main, "0") and p["ActiveState"] == "active" and time.time()

        ready = wait_for(active_again, 180, f"{unit} active again")
        start = wait_for(lambda: self.first_task_start("airflow", ONE_DAG, run_id), 180, "the next task")
        self.wait_run("airflow", ONE_DAG, run_id, 180)
        return {"ready_s": round(ready - t0, 1), "task_running_s": round(start - t0, 1)}

    def restarts(self) -> None:
        d = self.d
        self.settled()
        wait_for(lambda: d.sql(f"SELECT count(*) FROM dag WHERE dag_id = '{ONE_DAG}'") == "1", 120, ONE_DAG)
        say("restart to work: our scheduler SIGKILLed")
        rows = self.figures["restart"] = {"ours": self.restart_to_work(SCHEDULER)}
        say("restart to work: upstream's scheduler unit SIGKILLed")
        d.sb.systemctl("stop", SCHEDULER)
        self.start(UPSTREAM)
        self.wait_heartbeat(time.time(), UPSTREAM)
        rows["upstream"] = self.restart_to_work(UPSTREAM)
        d.sb.systemctl("stop", UPSTREAM)
        self.start(SCHEDULER)

    def throughput(self) -> None:
        d = self.d
        self.settled()
        wait_for(lambda: d.sql(f"SELECT count(*) FROM dag WHERE dag_id = '{MANY_DAG}'") == "1", 120, MANY_DAG)
        d.sql(f"UPDATE dag SET is_paused = false WHERE dag_id = '{MANY_DAG}'")
        say(f"throughput: {self.args.tasks} no-op tasks under our units")
        run_id = d.trigger(MANY_DAG)
        self.wait_run("airflow", MANY_DAG, run_id, 1800)
        ours = self.run_span("airflow", MANY_DAG, run_id)
        ours_retried = self.retried("airflow", MANY_DAG, run_id)
        d.sb.systemctl("stop", "airflow.target")
        say(f"throughput: {self.args.tasks} no-op tasks, the same commands by hand")
        self.start_by_hand()
        try:
            wait_for(self.by_hand_ready, 180, "the scheduler started by hand")
            wait_for(self.api_answers, 180, "the api-server started by hand")
            run_id = d.trigger(MANY_DAG)
            self.wait_run("airflow", MANY_DAG, run_id, 1800)
            by_hand = self.run_span("airflow", MANY_DAG, run_id)
            by_hand_retried = self.retried("airflow", MANY_DAG, run_id)
        finally:
            self.stop_by_hand()
        self.figures["throughput"] = {
            "tasks": self.args.tasks,
            "ours_s": round(ours, 1),
            "by_hand_s": round(by_hand, 1),
            "ours_retried_tasks": ours_retried,
            "by_hand_retried_tasks": by_hand_retried,
        }

    def start_by_hand(self) -> None:
        """The four commands as the airflow user, plain processes inside the container (no unit,
        no sandbox), with the units' environment: the keys and /etc/default/airflow (which only
        root reads: systemd reads them for the units), the database URL, the virtualenv first on
        PATH."""
        self._by_hand_since = time.time()
        env = {}
        for path in ("/etc/airflow-systemd/secrets.env", "/etc/default/airflow"):
            text = self.sb.exec("cat", path, check=False).stdout
            env.update(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
        env.update(
            AIRFLOW_HOME="/var/lib/airflow",
            AIRFLOW__API__HOST="127.0.0.1",  # as airflow-api-server.service sets it
            AIRFLOW__LOGGING__BASE_LOG_FOLDER="/var/log/airflow",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=self.pg.url("airflow"),
            VIRTUAL_ENV=str(VENV),
            PATH=f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        )
        script = (
            "cd /var/lib/airflow; for c in api-server scheduler dag-processor triggerer; do "
            "airflow $c >/dev/null 2>&1 & done; wait"
        )
        argv = self.sb.nsenter_argv(
            "setpriv", "--reuid=airflow", "--regid=airflow", "--init-groups", "sh", "-c", script, env=env
        )
        self.by_hand = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL)

    def by_hand_ready(self) -> bool:
        try:
            self.wait_heartbeat(self._by_hand_since, "by hand")
        except TimeoutError:
            return False
        return True

    def stop_by_hand(self) -> None:
        """SIGTERM, then SIGKILL, to every process started by hand, by PID (host PIDs)."""
        try:
            procs = [
                psutil.Process(self.by_hand.pid),
                *psutil.Process(self.by_hand.pid).children(recursive=True),
            ]
        except psutil.NoSuchProcess:
            procs = []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(sig)
            _, procs = psutil.wait_procs(procs, timeout=30)
            if not procs:
                break
        self.by_hand.wait(10)


def notify_path_cpu_per_hour(watchdog: float, hours: int = 20) -> float:
    """CPU seconds per hour of our job loops' proof of liveness, measured in-process: the
    hook's JobLoop and Probe fed an idle scheduler's rhythm (a loop iteration a second, a
    committed heartbeat every 5 s) on a simulated clock, sending READY/WATCHDOG/STATUS through
    a real Notifier to a real datagram socket; the CPU time of the sending thread."""
    code = f"""
import os, socket, tempfile, threading, time
from airflow_systemd.lifecycle import Lifecycle
from airflow_systemd.notify import Notifier
from airflow_systemd.services.job import JobLoop
from airflow_systemd.services.probe import Probe

path = os.path.join(tempfile.mkdtemp(), "notify")
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind(path)
def drain():
    while True:
        server.recv(4096)
threading.Thread(target=drain, daemon=True).start()
os.environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC=str(int({watchdog} * 1e6)), WATCHDOG_PID=str(os.getpid()))
clock = [0.0]
loop = JobLoop(Probe(Lifecycle("bench", Notifier(), 20), clock=lambda: clock[0]), "bench")
seconds = {hours} * 3600
start = time.thread_time()
for second in range(seconds):
    clock[0] = float(second)
    if second % 5 == 0:
        loop.heartbeat_committed()
    loop.iteration_done()
print((time.thread_time() - start) / {hours})
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return round(float(out.stdout.split()[-1]), 3)


# The rows after our cold start, in the order they run (Bench methods).
STEPS = ("costs", "restarts", "hangs", "throughput", "cold_start_standalone", "celery")


# --- the table -------------------------------------------------------------------------------
def seconds(value: float | None, budget: float | None = None) -> str:
    if value is None:
        return f"never within {budget:g} s" if budget else "—"
    return f"{value:.1f} s"


def retried_note(count: int | None) -> str:
    return f" ({count} task(s) retried)" if count else ""


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return ""
    return f"{a / b:.2f}"


def rows(f: dict, args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    """(measure, ours, alternative, its figure, ours / alternative) for every row measured."""
    out = []
    cs = f["cold_start"]
    alone_s = cs.get("standalone_dag_s")
    out.append(
        (
            "cold start: `systemctl start airflow.target` → every unit READY",
            seconds(cs["ours_ready_s"]),
            "airflow standalone",
            "(no readiness)",
            "",
        )
    )
    out.append(
        (
            "cold start → one-task DAG succeeded",
            seconds(cs["ours_dag_s"]) + retried_note(cs.get("ours_retried_tasks")),
            "airflow standalone",
            seconds(alone_s) + retried_note(cs.get("standalone_retried_tasks")),
            ratio(cs["ours_dag_s"], alone_s),
        )
    )
    ours, alone = f["idle"]["ours"], f["idle"].get("standalone", {})
    for key, label, unit in (
        ("pss_mib", "PSS", "MiB"),
        ("rss_mib", "RSS (sum)", "MiB"),
        ("cpu_s_per_h", "CPU", "s/h"),
    ):
        out.append(
            (
                f"idle {args.idle:g} s: {label}",
                f"{ours[key]:g} {unit}",
                "airflow standalone",
                f"{alone[key]:g} {unit}" if key in alone else "—",
                ratio(ours[key], alone.get(key)),
            )
        )
    out += hang_rows(f.get("hang", {}), args)
    if "liveness_cost" in f:
        out += cost_rows(f["liveness_cost"])
    if "throughput" in f:
        t = f["throughput"]
        out.append(
            (
                f"{t['tasks']} no-op tasks, run start → end",
                seconds(t["ours_s"]) + retried_note(t.get("ours_retried_tasks")),
                "the same commands by hand, no systemd",
                seconds(t["by_hand_s"]) + retried_note(t.get("by_hand_retried_tasks")),
                ratio(t["ours_s"], t["by_hand_s"]),
            )
        )
    r = f.get("restart", {})
    for key, label in (
        ("ready_s", "READY again (upstream: forked)"),
        ("task_running_s", "next task running"),
    ):
        if r:
            out.append(
                (
                    f"scheduler SIGKILL → {label}",
                    seconds(r["ours"][key]),
                    "upstream Type=simple unit",
                    seconds(r["upstream"][key]),
                    ratio(r["ours"][key], r["upstream"][key]),
                )
            )
    return out


def hang_rows(hang: dict, args: argparse.Namespace) -> list[tuple[str, str, str, str, str]]:
    out = []
    for service, fault in (
        ("airflow-scheduler", "database frozen"),
        ("airflow-dag-processor", "SIGSTOP"),
        ("airflow-api-server", "SIGSTOP"),
        ("airflow-triggerer", "a trigger blocking its event loop"),
        ("airflow-celery-worker", "broker frozen"),
    ):
        if service not in hang:
            continue
        h = hang[service]
        caught, new = h["ours"]["caught_s"], h["ours"]["new_process_s"]
        ours_text = seconds(caught, h["ours"]["budget_s"]) + (
            f" (new process {new:.1f} s)" if new is not None else ""
        )
        # --watchdog sets the job loops' and the worker's; the api-server keeps the shipped 30 s
        wd = (
            "WatchdogSec=30s, shipped"
            if service == "airflow-api-server"
            else f"WatchdogSec={args.watchdog:g}s"
        )
        if "upstream" in h:
            up = h["upstream"]
            out.append(
                (
                    f"hang caught, {service[8:]} ({fault})",
                    f"{ours_text} ({wd})",
                    "upstream Type=simple unit",
                    seconds(up["new_process_s"], up["budget_s"]) + f", {up['state']}",
                    "",
                )
            )
        helm = h.get("helm", {})
        probe = HELM[service]
        if helm.get("kill_after_s"):
            lo, hi = helm["kill_after_s"]
            text = f"{lo:.0f} to {hi:.0f} s (a probe fails {helm['failed_after_s']:.1f} s after the fault)"
            r = ratio(caught, (lo + hi) / 2)
        else:
            text, r = "probe never failed" if helm else "—", ""
        out.append(
            (
                f"hang caught, {service[8:]} ({fault})",
                f"{ours_text} ({wd})",
                f"Helm liveness probe (every {probe.period}s, timeout {probe.timeout}s, "
                f"{probe.failure_threshold} failures)",
                text,
                r,
            )
        )
    return out


def cost_rows(c: dict) -> list[tuple[str, str, str, str, str]]:
    return [
        (
            "cost of liveness, per job loop (scheduler, dag-processor, triggerer)",
            f"{c['ours_job_loop_cpu_s_per_h']:g} CPU s/h",
            "Helm `airflow jobs check --local`, 60 calls/h",
            f"{c['helm_job_probe_cpu_s_per_h']:g} CPU s/h ({c['helm_job_probe_cpu_per_call_s']:.2f} s/call)",
            ratio(c["ours_job_loop_cpu_s_per_h"], c["helm_job_probe_cpu_s_per_h"]),
        ),
        (
            "cost of liveness, api-server (server side)",
            f"{c['ours_api_server_cpu_s_per_h']:g} CPU s/h "
            f"({c['ours_api_server_requests_per_h']} requests/h)",
            "Helm httpGet, 360 requests/h",
            f"{c['helm_api_server_cpu_s_per_h']:g} CPU s/h "
            f"({c['health_request_server_cpu_ms']:g} ms/request)",
            ratio(c["ours_api_server_cpu_s_per_h"], c["helm_api_server_cpu_s_per_h"]),
        ),
    ]


def table(f: dict, args: argparse.Namespace) -> str:
    lines = ["| | ours | alternative | alternative's figure | ours ÷ alternative |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows(f, args)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short watchdog, windows, few tasks")
    parser.add_argument(
        "--watchdog", type=float, help="WatchdogSec= of the job loops (default 30, shipped; quick 4)"
    )
    parser.add_argument("--idle", type=float, help="seconds of the idle window (default 60; quick 5)")
    parser.add_argument("--tasks", type=int, help="no-op tasks of the throughput run (default 200; quick 4)")
    parser.add_argument(
        "--budget", type=float, help="seconds a hang is given to be caught (default 60; quick 25)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--only",
        help=f"comma-separated: which rows besides the cold start and idle of ours ({','.join(STEPS)})",
    )
    args = parser.parse_args(argv)
    defaults = {"watchdog": (30.0, 4.0), "idle": (60.0, 5.0), "tasks": (200, 4), "budget": (60.0, 25.0)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if os.geteuid() != 0:
        parser.error("needs root: it boots a container with systemd-nspawn")
    if args.budget <= args.watchdog:
        parser.error("--budget must be longer than --watchdog, or there is no kill to measure")

    only = args.only.split(",") if args.only else STEPS
    if set(only) - set(STEPS):
        parser.error(f"--only takes {','.join(STEPS)}")
    bench = Bench(args)
    started = time.monotonic()
    try:
        bench.setup()
        bench.cold_start_ours()
        for step in STEPS:
            if step in only:
                getattr(bench, step)()
    except BaseException:
        print(f"failed; measured so far: {json.dumps(bench.figures)}", file=sys.stderr)
        raise
    finally:
        bench.cleanup()
    f = bench.figures
    f["settings"] = vars(args) | {"json": str(args.json) if args.json else None}
    f["took_s"] = round(time.monotonic() - started)
    print(
        f"Airflow {f['airflow']} on PostgreSQL under systemd in the harness, {f['date']}, "
        f"took {f['took_s']} s"
    )
    print(table(f, args))
    if args.json:
        args.json.write_text(json.dumps(f, indent=1))
    print(json.dumps(f))
    return 0
