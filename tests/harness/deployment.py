"""Airflow installed into the sandbox's systemd the way an operator would do it.

`airflow-systemd install-units` writes the shipped units for the project's virtualenv (the
checkout is bind-mounted at its own path, so the venv is the same inside); the `airflow`
user comes from the shipped sysusers.d file; Airflow settings go to /etc/default/airflow.
The metadata database is a private PostgreSQL cluster on the host: the container shares the
host's network, and the test can stop or freeze it from outside.
Test drop-ins change only WatchdogSec=, timeouts (the Celery workers' drain bound too) and the
database URL. For the CeleryExecutor, Debian's redis-server runs inside the container
(tests/harness/redis.py), on a free port rather than 6379 because the container shares the
host's network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from airflow_systemd.alert.systemd import entry_text
from tests.harness.airflow_env import FAULTS
from tests.harness.pgcluster import PgCluster, free_port
from tests.harness.redis import SandboxRedis
from tests.harness.sandbox import Sandbox
from tests.harness.waiting import poll_until

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
DAGS = REPO / "tests" / "system" / "dags"  # the system tests' DAGs, which add_dag() copies in
SCHEDULER = "airflow-scheduler.service"
# Seconds, set by the test drop-in for the job loops (shipped: 30). Short enough that a hang test
# waits seconds, long enough that a loop on a loaded 2-core CI machine does not miss it: at 4 s,
# CI's scheduler was killed mid-loop in the Celery module (2026-12-02) and its queued task then
# waited for orphan adoption past the test's bound.
WATCHDOG = 10
# A restarted scheduler adopts (or resets) the queued tasks of its dead predecessor once that one's
# heartbeat is older than the threshold, at the next check (defaults 30 s and 300 s, past the system
# tests' bounds): for the modules whose faults, or a loaded machine, restart the scheduler.
ADOPT_ORPHANS_FAST = {
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
}
# Prefix drop-in (systemd >= 246): applies to every airflow-*.service.
DROP_IN_DIR = "/etc/systemd/system/airflow-.service.d"
SERVICES_3 = ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server")
SERVICES_2 = ("airflow-scheduler", "airflow-triggerer", "airflow-webserver")
JOB_SERVICES = ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
WORKER_TEMPLATE = "airflow-celery-worker@"  # + queue: one instance per Celery queue
# The fault-injection module, copied inside: the checkout may be under /tmp, which the
# unit's PrivateTmp=yes hides (install-units mounts back only the virtualenv's code).
FAULTS_INSIDE = "/usr/local/lib/afsd-test-faults"
# What goes there: the faults module and the post-import hook it imports, as a package of the
# same name, so that PYTHONPATH=FAULTS_INSIDE alone makes both importable.
FAULT_FILES = {
    "airflow_local_settings.py": FAULTS / "airflow_local_settings.py",
    "tests/__init__.py": REPO / "tests" / "__init__.py",
    "tests/harness/__init__.py": REPO / "tests" / "harness" / "__init__.py",
    "tests/harness/after_import.py": REPO / "tests" / "harness" / "after_import.py",
}


def airflow_settings(api_port: int, **extra: str) -> dict[str, str]:
    settings = {
        # Airflow 3: tasks report to the API server; every process must share the JWT secret.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "system-tests-only-jwt-secret-0123456789abcdef",
        "AIRFLOW__API__SECRET_KEY": "system-tests-only-secret-key",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",  # the same, for Airflow 2.10
        "AFSD_PROBE_URL": f"http://127.0.0.1:{api_port}/api/v2/monitor/health",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(api_port),
        "AIRFLOW__WEBSERVER__WORKERS": "1",
        # Recovery within a test's time: a task whose process died with its scheduler is
        # found by its missing heartbeat (default 300 s) and retried (see the DAGs' retries).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_ZOMBIE_TASK_THRESHOLD": "30",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),  # the triggerer's, 8794
    }
    settings.update(extra)
    return settings


class Deployment:
    def __init__(self, sb: Sandbox, pg: PgCluster, db: str) -> None:
        self.sb = sb
        self.pg = pg
        self.db = db
        self.api_port = free_port()

    def install(self, watchdog: str = f"{WATCHDOG}s") -> None:
        sb = self.sb
        sb.write_file("/etc/sysusers.d/airflow.conf", (REPO / "units" / "airflow.sysusers").read_text())
        sb.exec("systemd-sysusers")
        checkout = self._checkout_env()
        sb.exec(
            str(VENV / "bin" / "airflow-systemd"),
            "install-units",
            "--venv",
            str(VENV),
            "--no-reload",
            env=checkout,
        )
        for inside, source in FAULT_FILES.items():
            sb.write_file(f"{FAULTS_INSIDE}/{inside}", source.read_text())
        self.configure()
        self.drop_in(
            "50-test-db.conf",
            f"[Service]\nEnvironment=AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={self.pg.url(self.db)}\n",
        )
        if checkout:
            self.drop_in(
                "50-test-checkout.conf", f"[Service]\nEnvironment=PYTHONPATH={checkout['PYTHONPATH']}\n"
            )
        # A short watchdog for the job loops only: the HTTP server keeps the shipped 30 s, as a
        # one-worker API server on a loaded 2-core machine can miss a 2 s health deadline.
        for service in JOB_SERVICES:
            self.drop_in("50-test-watchdog.conf", f"[Service]\nWatchdogSec={watchdog}\n", service)

    @staticmethod
    def _checkout_env() -> dict[str, str]:
        """PYTHONPATH=<this checkout> when the virtualenv's airflow_systemd is another checkout's.

        A git worktree shares one virtualenv whose editable install points at the main
        checkout: the units must still run this checkout's code (PYTHONPATH comes before the
        editable finder). In a plain clone, as in CI, nothing changes.
        """
        where = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", "import airflow_systemd; print(airflow_systemd.__file__)"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",  # not the checkout, which python -c would put first on sys.path
            check=True,
        ).stdout.strip()
        return {} if Path(where).resolve().is_relative_to(REPO) else {"PYTHONPATH": str(REPO)}

    def configure(self, **extra: str) -> None:
        text = "".join(f"{k}={v}\n" for k, v in airflow_settings(self.api_port, **extra).items())
        self.sb.write_file("/etc/default/airflow", text, mode=0o640)

    def switch_executor(self, executor: str, **settings: str) -> None:
        """The documented switch of the whole installation, README "CeleryExecutor workers": one
        edit of /etc/default/airflow (the executor, and for Celery the broker's URL), then
        ``systemctl enable --now`` (or ``disable --now``) the workers and ``systemctl restart
        airflow.target``, which the caller does."""
        lines = self.sb.exec("cat", "/etc/default/airflow").stdout.splitlines()
        settings = {"AIRFLOW__CORE__EXECUTOR": executor, **settings}
        kept = [line for line in lines if line.split("=", 1)[0] not in settings]
        text = "".join(f"{line}\n" for line in kept) + "".join(f"{k}={v}\n" for k, v in settings.items())
        self.sb.write_file("/etc/default/airflow", text, mode=0o640)

    def install_broker(self, watchdog: str = f"{WATCHDOG}s", drain: int = 50) -> SandboxRedis:
        """Debian's redis-server in the container, for the CeleryExecutor (its URL is for
        switch_executor); the workers' test drop-in: a short watchdog like the job loops', and a
        drain bound of DRAIN seconds (the entrypoint's --stop-timeout, shipped 3600) under a
        TimeoutStopSec= 10 s longer."""
        broker = SandboxRedis(self.sb)
        broker.install()
        unit = self.sb.exec("cat", f"/etc/systemd/system/{WORKER_TEMPLATE}.service").stdout
        exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        self.drop_in(
            "50-test-watchdog.conf",
            f"[Service]\nWatchdogSec={watchdog}\nTimeoutStopSec={drain + 10}s\n"
            f"ExecStart=\n{exec_start} --stop-timeout {drain}\n",
            WORKER_TEMPLATE,
        )
        return broker

    def drop_in(self, name: str, text: str, service: str | None = None) -> None:
        directory = f"/etc/systemd/system/{service}.service.d" if service else DROP_IN_DIR
        self.sb.write_file(f"{directory}/{name}", text)
        self.sb.daemon_reload()

    # --- the other Airflow services --------------------------------------------------------
    def _service_properties(self) -> list[str]:
        """How to run the airflow CLI inside like the services do (as a transient unit)."""
        return [
            "--property=User=airflow",
            "--property=Group=airflow",
            "--property=EnvironmentFile=-/etc/airflow-systemd/secrets.env",
            "--property=EnvironmentFile=/etc/default/airflow",
            "--property=StateDirectory=airflow",
            "--property=LogsDirectory=airflow",
            "--setenv=AIRFLOW_HOME=/var/lib/airflow",
            "--setenv=AIRFLOW__LOGGING__BASE_LOG_FOLDER=/var/log/airflow",
            f"--setenv=AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={self.pg.url(self.db)}",
        ]

    def start_companions(self) -> None:
        """The API server (Airflow 3 tasks need it) and the DAG processor, from their units."""
        self.sb.systemctl("start", "airflow-api-server.service", "airflow-dag-processor.service")
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        self.wait_for(lambda: _http_ok(url), 60, "the API server", unit="airflow-api-server.service")

    def airflow(self, *args: str) -> str:
        """Run the `airflow` CLI inside, as the airflow user, with the services' settings."""
        return self.sb.exec(
            "systemd-run",
            "--quiet",
            "--wait",
            "--pipe",
            "--collect",
            *self._service_properties(),
            str(VENV / "bin" / "airflow"),
            *args,
        ).stdout

    def add_dag(self, name: str) -> str:
        """Copy tests/system/dags/NAME.py into the DAGs folder; wait until it is parsed."""
        text = (DAGS / f"{name}.py").read_text()
        self.sb.exec(
            "install",
            "-d",
            "-o",
            "airflow",
            "-g",
            "airflow",
            "-m",
            "0750",
            "/var/lib/airflow",
            "/var/lib/airflow/dags",
        )
        self.sb.write_file(f"/var/lib/airflow/dags/{name}.py", text)
        self.wait_for(
            lambda: self.sql(f"SELECT count(*) FROM dag WHERE dag_id = '{name}'") == "1",
            120,
            f"DAG {name} to be parsed",
            unit="airflow-dag-processor.service",
        )
        self.sql(f"UPDATE dag SET is_paused = false WHERE dag_id = '{name}'")  # retire() paused it
        return name

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run_id = f"afsd_{dag_id}_{time.time_ns()}"
        self.airflow(
            "dags", "trigger", dag_id, "--run-id", run_id, *(("--conf", json.dumps(conf)) if conf else ())
        )
        return run_id

    def sql(self, statement: str) -> str:
        return self.pg.sql(statement, self.db)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.sql(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str:
        return self.sql(
            f"SELECT state FROM task_instance WHERE dag_id = '{dag_id}' AND run_id = '{run_id}' "
            f"AND task_id = '{task_id}'"
        )

    def task_logs(self, dag_id: str, run_id: str, lines: int = 25) -> str:
        """The last LINES of every try's log of the run (for a failed assertion's message: why a
        task failed is in its own log, not in the scheduler's journal)."""
        folder = f"/var/log/airflow/dag_id={dag_id}/run_id={run_id}"
        return self.sb.exec(
            "sh",
            "-c",
            f'for f in \'{folder}\'/task_id=*/attempt=*.log; do echo "== $f"; tail -n {lines} "$f"; done',
            check=False,
        ).stdout

    def retire(self, dag_id: str) -> None:
        """Pause a test DAG and fail what is left of its runs, so later tests start clean."""
        self.sql(f"UPDATE dag SET is_paused = true WHERE dag_id = '{dag_id}'")
        self.sql(
            f"UPDATE task_instance SET state = 'failed' WHERE dag_id = '{dag_id}' "
            "AND state NOT IN ('success', 'failed')"
        )
        self.sql(f"UPDATE dag_run SET state = 'failed' WHERE dag_id = '{dag_id}' AND state <> 'success'")

    # --- observing units -------------------------------------------------------------
    def props(self, unit: str = SCHEDULER) -> dict[str, str]:
        names = (
            "ActiveState,SubState,Result,MainPID,ControlPID,NRestarts,StatusText,ControlGroup,ExecMainStatus"
        )
        out = self.sb.systemctl("show", "-p", names, unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def state(self, unit: str = SCHEDULER) -> str:
        p = self.props(unit)
        return f"{p['ActiveState']}/{p['SubState']}"

    def wait_for(self, predicate, timeout: float, what: str, unit: str = SCHEDULER):
        return poll_until(
            predicate, timeout, what, context=lambda: f"; {self.props(unit)}\n{self.journal_tail(unit)}"
        )

    def cgroup_pids(self, unit: str = SCHEDULER) -> set[int]:
        cgroup = self.props(unit)["ControlGroup"]
        if not cgroup:
            return set()
        out = self.sb.exec("sh", "-c", f"cat /sys/fs/cgroup{cgroup}/cgroup.procs 2>/dev/null || true").stdout
        return {int(pid) for pid in out.split()}

    def process_tree(self) -> dict[int, int]:
        out = self.sb.exec("ps", "-e", "-o", "pid=,ppid=").stdout
        return {int(a): int(b) for a, b in (line.split() for line in out.splitlines())}

    def strays(self, unit: str = SCHEDULER, settle: float = 2.0) -> set[int]:
        """Processes in the unit's cgroup that descend neither from its current main process nor
        from its control process (ExecStopPost=, the alert, runs between two main processes),
        and are still there, still unrooted, ``settle`` seconds later.

        One snapshot alone is racy: a control process that ends between reading the process
        table and reading ControlPID looks unrooted, and so does a process systemd is still
        killing while the unit stops. A process that *survived* is there both times.
        """
        first = self._unrooted(unit)
        if not first:
            return first
        time.sleep(settle)
        return first & self._unrooted(unit)

    def assert_no_strays(self, unit: str = SCHEDULER) -> None:
        strays = self.strays(unit)
        if strays:
            listing = self.sb.exec(
                "ps", "-o", "pid,ppid,stat,args", "-p", ",".join(map(str, strays)), check=False
            ).stdout
            raise AssertionError(f"survivors in {unit} ({self.state(unit)}):\n{listing}")

    def _unrooted(self, unit: str) -> set[int]:
        pids = self.cgroup_pids(unit)
        tree = self.process_tree()
        props = self.props(unit)
        roots = {int(props["MainPID"]), int(props.get("ControlPID") or 0)} - {0}
        unrooted = set()
        for pid in pids & tree.keys():  # one that is gone already survived nothing
            p = pid
            while p not in roots | {0, 1} and p in tree:
                p = tree[p]
            if p not in roots:
                unrooted.add(pid)
        return unrooted

    def cursor(self) -> str:
        out = self.sb.exec("journalctl", "-n", "0", "--show-cursor", "--no-pager").stdout
        return out.strip().rsplit("cursor: ", 1)[-1]

    def journal_json(self, cursor: str, unit: str | None = SCHEDULER, *args: str) -> list[dict]:
        """The unit's (``None``: every) journal entries after ``cursor`` matching ``args``.

        Not ``--after-cursor``: journalctl 252 combined with a match then skips the first
        matching entry. ``--cursor`` includes the cursor's own entry, dropped here.
        """
        select = ("-u", unit) if unit else ()
        out = self.sb.exec(
            "journalctl", *select, f"--cursor={cursor}", "--no-pager", "-o", "json", *args
        ).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e for e in entries if e["__CURSOR"] != cursor]

    def journal(self, cursor: str, unit: str = SCHEDULER, *args: str) -> str:
        return "".join(f"{entry_text(e)}\n" for e in self.journal_json(cursor, unit, *args))

    def journal_tail(self, unit: str = SCHEDULER, lines: int = 40) -> str:
        return self.sb.exec(
            "journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat", check=False
        ).stdout

    def stop_all(self) -> None:
        self.sb.systemctl("stop", "airflow.target", "airflow-*.service", check=False)
        self.sb.systemctl("reset-failed", "airflow-*.service", check=False)

    def reset(self, unit: str = SCHEDULER) -> None:
        self.sb.systemctl("stop", unit, check=False)
        self.sb.systemctl("reset-failed", unit, check=False)


def worker(queue: str) -> str:
    """The Celery worker unit serving QUEUE."""
    return f"{WORKER_TEMPLATE}{queue}.service"


def running_loop(d: Deployment) -> bool:
    p = d.props()
    return p["ActiveState"] == "active" and p["StatusText"].startswith("running: loop")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
