"""Three hosts from one .deb (Debian 12), as the README's "More than one host" tells an operator
to set them up, each a clean root of the release booted with systemd, on a network of the
test's own (tests/harness/lab.py: a bridge in a namespace made for the test; the host's own
namespace gains no interface, route or listener):

* A (``a.lab``): Debian's PostgreSQL and Redis, installed with apt; ``role control``
  (API server on every address, scheduler, DAG processor, triggerer).
* B (``b.lab``): ``role worker scheduler`` (a Celery worker, the second scheduler, a triggerer).
* C (``c.lab``): ``role worker``.

Every host installs the same .deb under a policy-rc.d that forbids starting services (apt
starts nothing: checked), B and C import the settings A exported, and every host gets the same
DAG files in its DAG folder. Then, in this order (the module's tests share the hosts, and the
last one powers C off): a fan-out runs on B and C; A's API server serves the log of a task that
ran on C (from C's log server); 40 short tasks on two worker hosts against one; C partitioned
for twice the task heartbeat timeout; A's scheduler stopped for good in the middle of a run
(it stays masked: B's scheduler runs everything after it); C powered off while it runs tasks.

Every command inside a machine runs as root, as the administrator's would (apt, the roles, the
settings), and PostgreSQL's psql as postgres. Test-only settings, in /etc/default/airflow of
every host: the task heartbeat timeout 20 s
(shipped 300 s), checked every 5 s, which bounds how soon a lost task is retried; two tasks at
a time per worker. The units keep their shipped timings (WatchdogSec=30s, RestartSec=10s).
Figures are printed by each test (``-rA`` shows them) and again at the module's end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.lab import PREFIX_LENGTH, Lab, remove_labs_of_dead_sessions, session_lab_name
from tests.harness.sandbox import Sandbox
from tests.harness.sessions import remove_sandboxes_of_dead_sessions, session_sandbox
from tests.harness.waiting import poll_until
from tests.package.test_package import apt

pytestmark = pytest.mark.parametrize("suite", ["bookworm"], indirect=True)

HOSTS = ("a", "b", "c")
MACHINE_PREFIX = "afsdhost"  # + a, b or c + the session's PID
LAB_PREFIX = "afsdlab"
VENV_PYTHON = "/usr/lib/airflow-systemd/venv/bin/python3"
DAGS = "/var/lib/airflow/dags"
SETTINGS_FILE = "/root/lab-settings.env"
WORKER = "airflow-celery-worker@default.service"
SCHEDULER = "airflow-scheduler.service"
HEARTBEAT_TIMEOUT = 20
WORKER_CONCURRENCY = 2  # tasks at a time per worker
# Passwords of the test's own services, on the test's own network: one plain word each (what
# export-settings carries).
DB_PASSWORD = "lab-db-password-0123456789"
REDIS_PASSWORD = "lab-redis-password-0123456789"
SHARED = {  # every host's /etc/default/airflow
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
}
CONTROL = {  # A's, which export-settings carries to B and C
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow:{DB_PASSWORD}@a.lab/airflow",
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__BROKER_URL": f"redis://:{REDIS_PASSWORD}@a.lab:6379/0",
}
# What makes apt's maintainer scripts start nothing (deb-systemd-invoke and invoke-rc.d ask it):
# a joining host must not run a service before it has the installation's settings.
POLICY_RC_D = "#!/bin/sh\n# tests/package/test_hosts.py: start nothing while apt installs\nexit 101\n"
LOG_MARKER = "lab-task-says"

DAG = f"""\
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

# A lost try is retried once; a second loss fails the run.
ARGS = {{"retries": 1, "retry_delay": timedelta(seconds=2)}}
SLEEP = (
    "echo {LOG_MARKER} {{{{ ti.task_id }}}} on $(cat /etc/hostname);"
    " sleep {{{{ dag_run.conf.get('seconds', 1) }}}}"
)


def dag(dag_id):
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        is_paused_upon_creation=False,
        default_args=ARGS,
    )


with dag("hosts_fanout"):
    for i in range(8):
        BashOperator(task_id=f"t{{i}}", bash_command=SLEEP)

with dag("hosts_four"):
    for i in range(4):
        BashOperator(task_id=f"t{{i}}", bash_command=SLEEP)

with dag("hosts_sleeps"):
    for i in range(40):
        BashOperator(task_id=f"s{{i}}", bash_command=SLEEP)

with dag("hosts_chain"):
    BashOperator(task_id="c0", bash_command=SLEEP) >> BashOperator(task_id="c1", bash_command=SLEEP)
"""
DAG_IDS = ("hosts_fanout", "hosts_four", "hosts_sleeps", "hosts_chain")

# Run inside A, with the package's Python: one request to its API server, status and body out.
API_CLIENT = """\
import os, sys, urllib.error, urllib.request
method, path, body = sys.argv[1:4]
headers = {"Content-Type": "application/json", "Accept": "application/json"}
if os.environ.get("TOKEN"):
    headers["Authorization"] = "Bearer " + os.environ["TOKEN"]
url = "http://127.0.0.1:8080" + path
request = urllib.request.Request(url, body.encode() or None, headers, method=method)
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        status, text = response.status, response.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
print(status)
sys.stdout.write(text)
"""

FIGURES: list[str] = []


def figure(text: str) -> None:
    FIGURES.append(text)
    print(f"\nFIGURE {text}")


@dataclass(frozen=True)
class Try:
    task_id: str
    try_number: int
    state: str
    host: str
    start: float  # epoch seconds, 0 when not set
    end: float


@dataclass(frozen=True)
class Run:
    dag_id: str
    run_id: str


class Hosts:
    """The three machines on their lab, and what the tests ask of A's database and API."""

    def __init__(self, lab: Lab, machines: dict[str, Sandbox]) -> None:
        self.lab = lab
        self.machines = machines
        self.token = ""
        self.runs = 0
        self.fanout: Run | None = None  # the first test's run, whose log the second one reads

    def __getitem__(self, short: str) -> Sandbox:
        return self.machines[short]

    def sql(self, query: str) -> list[list[str]]:
        out = self["a"].exec(
            "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-F", "\t", "-d", "airflow", "-c", query,
            timeout=60,
        ).stdout  # fmt: skip
        return [line.split("\t") for line in out.splitlines() if line]

    def api(self, method: str, path: str, body: object = None) -> tuple[int, str]:
        done = self["a"].exec(
            VENV_PYTHON, "-I", "-c", API_CLIENT, method, path, "" if body is None else json.dumps(body),
            env={"TOKEN": self.token}, timeout=90,
        ).stdout  # fmt: skip
        status, _, text = done.partition("\n")
        return int(status), text

    def login(self) -> None:
        """A token for the API, as the README's admin gets one: the generated password."""
        path = "/var/lib/airflow/simple_auth_manager_passwords.json.generated"
        poll_until(lambda: self["a"].exec("test", "-s", path, check=False).returncode == 0, 120, path)
        password = json.loads(self["a"].exec("cat", path).stdout)["admin"]
        status, text = self.api("POST", "/auth/token", {"username": "admin", "password": password})
        assert status == 201, text
        self.token = json.loads(text)["access_token"]

    def trigger(self, dag_id: str, seconds: float = 1) -> Run:
        self.runs += 1
        run = Run(dag_id, f"{dag_id}_{self.runs}")
        body = {"dag_run_id": run.run_id, "logical_date": None, "conf": {"seconds": seconds}}
        status, text = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        assert status == 200, text
        return run

    def state(self, run: Run) -> str:
        rows = self.sql(
            f"SELECT state FROM dag_run WHERE dag_id = '{run.dag_id}' AND run_id = '{run.run_id}'"
        )
        return rows[0][0] if rows else ""

    def wait(self, run: Run, timeout: float) -> str:
        """The run's final state (success or failed), or AssertionError with the diagnostics."""
        return poll_until(
            lambda: (s := self.state(run)) in ("success", "failed") and s,
            timeout,
            f"{run.run_id} to end",
            every=1,
            context=lambda: self.diagnostics(run),
        )

    def seconds(self, run: Run) -> float:
        (row,) = self.sql(
            "SELECT extract(epoch FROM end_date - start_date) FROM dag_run"
            f" WHERE dag_id = '{run.dag_id}' AND run_id = '{run.run_id}'"
        )
        return float(row[0])

    def tries(self, run: Run) -> list[Try]:
        """Every try of the run's tasks: the earlier ones from task_instance_history."""
        columns = (
            "task_id, try_number, coalesce(state, ''), coalesce(hostname, ''),"
            " coalesce(extract(epoch FROM start_date), 0), coalesce(extract(epoch FROM end_date), 0)"
        )
        where = f"WHERE dag_id = '{run.dag_id}' AND run_id = '{run.run_id}'"
        rows = self.sql(
            f"SELECT {columns} FROM task_instance_history {where}"
            f" UNION ALL SELECT {columns} FROM task_instance {where} ORDER BY 1, 2"
        )
        return [Try(r[0], int(r[1]), r[2], r[3], float(r[4]), float(r[5])) for r in rows]

    def running_on(self, run: Run, host: str) -> list[Try]:
        return [t for t in self.tries(run) if t.state == "running" and t.host == host]

    def diagnostics(self, run: Run | None = None) -> str:
        """For a failure: each try's host, every Airflow unit's NRestarts, each host's journal
        warnings."""
        parts = []
        if run is not None:
            parts.append(f"\n--- tries of {run.run_id} (state {self.state(run)!r}) ---")
            parts += [
                f"  {t.task_id} try {t.try_number}: {t.state} on {t.host or '-'}" for t in self.tries(run)
            ]
        for short, machine in self.machines.items():
            if machine.leader_pid() is None:
                parts.append(f"\n--- {short}: powered off ---")
                continue
            parts.append(self._host_diagnostics(short, machine))
        return "\n".join(parts)

    @staticmethod
    def _host_diagnostics(short: str, machine: Sandbox) -> str:
        try:
            # one line per unit (systemctl separates the units' blocks with an empty line)
            units = machine.sh(
                "systemctl show -p Id,ActiveState,NRestarts,StatusText 'airflow*.service'"
                " | awk 'BEGIN {RS = \"\"} {$1 = $1; print}'",
                check=False,
                timeout=30,
            ).stdout
            warnings = machine.sh(
                "journalctl -q --no-pager -b -p warning -o short-monotonic | tail -n 40",
                check=False,
                timeout=30,
            ).stdout
        except Exception as e:  # diagnostics must not hide the failure they explain
            return f"\n--- {short}: no diagnostics: {e!r} ---"
        return f"\n--- {short}: units ---\n{units}\n--- {short}: journal warnings ---\n{warnings}"


def nothing_started(machine: Sandbox) -> str:
    """What runs of Airflow, PostgreSQL or Redis on MACHINE (units, and processes of their
    accounts): empty after an install under the policy-rc.d."""
    return machine.sh(
        "systemctl list-units --plain --no-legend --state=active,activating,reloading"
        " 'airflow*' 'postgresql*' 'redis*';"
        " for user in airflow postgres redis; do"
        '   uid=$(id -u "$user" 2>/dev/null) || continue;'
        "   for s in /proc/[0-9]*/status; do"
        '     awk -v u="$uid" \'/^Uid:/ && $2 == u {f = 1} END {exit !f}\' "$s" 2>/dev/null'
        '       && echo "process of $user: ${s%/status}";'
        "   done;"
        " done; true"
    ).stdout.strip()


def install(machine: Sandbox, deb: Path, *packages: str) -> None:
    machine.write_file("/usr/sbin/policy-rc.d", POLICY_RC_D, mode=0o755)
    apt(machine, "install", f"{deb.parent}/{deb.name}", *packages)
    started = nothing_started(machine)
    assert started == "", f"apt started services on {machine.name}:\n{started}"
    machine.exec("rm", "/usr/sbin/policy-rc.d")


def configure(machine: Sandbox, settings: dict[str, str]) -> None:
    """Append SETTINGS to /etc/default/airflow (as an administrator does: later lines win)."""
    lines = "".join(f"{k}={v}\n" for k, v in settings.items())
    machine.sh("cat >> /etc/default/airflow", input=lines)


def serve_database_and_broker(a: Sandbox, address: str) -> None:
    """Debian's PostgreSQL and Redis on A, for the lab's hosts: listening on A's lab address
    too, with a password each."""
    version = a.exec("ls", "/etc/postgresql").stdout.split()[0]
    a.write_file(
        f"/etc/postgresql/{version}/main/conf.d/lab.conf",
        f"listen_addresses = 'localhost,{address}'\nmax_connections = 200\n"
        # a test's cluster: durability traded for speed on a shared machine
        "fsync = off\nsynchronous_commit = off\n",
    )
    hba = f"/etc/postgresql/{version}/main/pg_hba.conf"
    a.sh(f"echo 'host airflow airflow {address}/{PREFIX_LENGTH} scram-sha-256' >> {hba}")
    a.sh(f"printf 'bind 127.0.0.1 {address}\\nrequirepass {REDIS_PASSWORD}\\n' >> /etc/redis/redis.conf")
    a.systemctl("start", f"postgresql@{version}-main.service", "redis-server.service", timeout=120)
    for statement in (
        f"CREATE ROLE airflow LOGIN PASSWORD '{DB_PASSWORD}'",
        "CREATE DATABASE airflow OWNER airflow",
    ):
        a.exec("runuser", "-u", "postgres", "--", "psql", "-Xq", "-c", statement)


def role(machine: Sandbox, *args: str) -> None:
    done = machine.exec("airflow-systemd", "role", *args, timeout=600, check=False)
    if done.returncode != 0:
        # What failed to start says why in its journal (seen once in CI: "A dependency job for
        # airflow-celery-worker@default.service failed" on C, the output naming no cause).
        journal = machine.sh("journalctl -q --no-pager -o short-monotonic -u 'airflow-*' -n 80; true").stdout
        raise AssertionError(f"role {' '.join(args)}: {done.stderr}\n--- journal ---\n{journal}")


def boot_hosts(deb: Path, debian_root: Path, stack: ExitStack) -> Hosts:
    """Boot, join and install the three hosts, set up A, join B and C (see the module).
    ``stack``: an ExitStack that tears down what was made, whatever fails."""
    remove_labs_of_dead_sessions(LAB_PREFIX)
    lab = Lab(session_lab_name(LAB_PREFIX))
    stack.callback(lab.destroy)
    lab.create()
    machines = {}
    for short in HOSTS:
        remove_sandboxes_of_dead_sessions(MACHINE_PREFIX + short)
        machines[short] = session_sandbox(
            MACHINE_PREFIX + short, lower=debian_root, binds=(), binds_ro=(deb.parent,), private_network=True
        )
        stack.callback(machines[short].down)  # before lab.destroy: the machines go first
    hosts = Hosts(lab, machines)
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda m: m.up(), machines.values()))
        for short in HOSTS:
            lab.join(short, machines[short])
        lab.write_hosts()
        # apt mostly downloads and unpacks: the three side by side
        installs = [
            pool.submit(install, machines["a"], deb, "postgresql", "redis-server"),
            pool.submit(install, machines["b"], deb),
            pool.submit(install, machines["c"], deb),
        ]
        for done in installs:
            done.result()
    a = machines["a"]
    serve_database_and_broker(a, lab.addresses["a"])
    for machine in machines.values():
        configure(machine, SHARED)
        machine.write_file(f"{DAGS}/hosts.py", DAG)
    configure(a, CONTROL)
    role(a, "control")
    a.exec("airflow-systemd", "export-settings", "--host", lab.host_name("a"), SETTINGS_FILE)
    exported = a.exec("cat", SETTINGS_FILE).stdout
    # One host after the other, as the README has an operator do it: each joining host's
    # db-migrate and first start against A's database, not two at once.
    join(machines["b"], exported, "worker", "scheduler")
    join(machines["c"], exported, "worker")
    hosts.login()
    poll_until(
        lambda: hosts.sql(f"SELECT count(*) FROM dag WHERE dag_id IN {DAG_IDS} AND NOT is_paused") == [["4"]],
        180,
        "the DAGs parsed on A",
        every=1,
        context=hosts.diagnostics,
    )
    return hosts


def join(machine: Sandbox, exported: str, *roles: str) -> None:
    """What an operator does on a joining host: the exported file, root's and 0600, imported;
    then its roles."""
    machine.write_file(SETTINGS_FILE, exported, mode=0o600)
    machine.exec("airflow-systemd", "import-settings", SETTINGS_FILE)
    role(machine, *roles)


@pytest.fixture(scope="module")
def hosts(suite, deb, debian_root) -> Iterator[Hosts]:
    """The three hosts, joined. The figures reach the run's output through the terminal summary
    (tests/package/conftest.py): what a fixture writes here is captured like a test's output."""
    started = time.monotonic()
    with ExitStack() as stack:
        hosts = boot_hosts(deb, debian_root, stack)
        figure(f"three hosts booted, installed and joined: {time.monotonic() - started:.0f} s")
        try:
            yield hosts
        finally:
            figure(f"the module, teardown excluded: {time.monotonic() - started:.0f} s")


# --- the tests, in the order they run ----------------------------------------------------------


def listening_ports() -> set[int]:
    """The TCP ports something listens on in this process's (the host's) network namespace."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_hosts_reach_each_other_by_name_and_the_host_gains_no_interface_route_or_listener(hosts):
    health = f"http://{hosts.lab.host_name('a')}:8080/api/v2/monitor/health"
    for short in HOSTS:
        probe = f"import urllib.request; urllib.request.urlopen({health!r}, timeout=10)"
        hosts[short].exec(VENV_PYTHON, "-I", "-c", probe, timeout=60)
    interfaces = {p.name for p in Path("/sys/class/net").iterdir()}
    assert not interfaces & {hosts.lab.veth(s) for s in HOSTS}, interfaces
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "10.88.0." not in routes, routes
    # the shipped ports of A's API server, the workers' log servers and A's Redis
    assert not listening_ports() & {8080, 8793, 8794, 6379}


def test_a_dag_fanned_out_over_eight_tasks_runs_on_both_worker_hosts(hosts):
    run = hosts.trigger("hosts_fanout", seconds=3)
    assert hosts.wait(run, 180) == "success", hosts.diagnostics(run)
    succeeded = [t for t in hosts.tries(run) if t.state == "success"]
    assert sorted(t.task_id for t in succeeded) == [f"t{i}" for i in range(8)], hosts.diagnostics(run)
    assert {t.host for t in succeeded} == {"b.lab", "c.lab"}, hosts.diagnostics(run)
    figure(f"fan-out of 8 tasks (3 s each) on B and C: {hosts.seconds(run):.1f} s")
    hosts.fanout = run


def test_the_api_server_on_a_serves_the_log_of_a_task_that_ran_on_c(hosts):
    run = hosts.fanout
    on_c = next(t for t in hosts.tries(run) if t.host == "c.lab" and t.state == "success")
    local = f"/var/log/airflow/dag_id={run.dag_id}/run_id={run.run_id}/task_id={on_c.task_id}"
    assert hosts["a"].exec("test", "-e", local, check=False).returncode != 0  # only C has it
    path = (
        f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{on_c.task_id}"
        f"/logs/{on_c.try_number}?full_content=true"
    )
    status, text = hosts.api("GET", path)
    assert status == 200, text
    assert f"{LOG_MARKER} {on_c.task_id} on {hosts['c'].name}" in text, text[-3000:]
    assert "c.lab:8793" in text, text[-3000:]  # where A's API server read it


def most_at_once(tries: list[Try]) -> int:
    """The most tries that ran at the same moment (an end before a start at the same instant)."""
    moments = sorted([(t.start, 1) for t in tries] + [(t.end, -1) for t in tries])
    at_once = most = 0
    for _, step in moments:
        at_once += step
        most = max(most, at_once)
    return most


def test_forty_short_tasks_run_on_both_worker_hosts_slots_at_once_and_on_one_within_its_own(hosts):
    two = hosts.trigger("hosts_sleeps")
    assert hosts.wait(two, 300) == "success", hosts.diagnostics(two)
    assert {t.host for t in hosts.tries(two)} == {"b.lab", "c.lab"}
    hosts["c"].systemctl("stop", WORKER, timeout=120)  # nothing runs there: the drain is short
    try:
        one = hosts.trigger("hosts_sleeps")
        assert hosts.wait(one, 400) == "success", hosts.diagnostics(one)
    finally:
        hosts["c"].systemctl("start", WORKER, timeout=180)
    assert {t.host for t in hosts.tries(one)} == {"b.lab"}
    # Behaviour, not speed (the seconds are the figure): two hosts' slots (2 + 2) were used at
    # once, and one host never ran more than its own 2.
    assert most_at_once(hosts.tries(two)) > WORKER_CONCURRENCY >= most_at_once(hosts.tries(one)), (
        hosts.tries(two),
        hosts.tries(one),
    )
    with_two, with_one = hosts.seconds(two), hosts.seconds(one)
    figure(
        f"40 tasks of 1 s, concurrency 2 per worker: two worker hosts {with_two:.1f} s,"
        f" one {with_one:.1f} s (one/two = {with_one / with_two:.2f})"
    )


def four_tasks_two_running_on_c(hosts: Hosts) -> tuple[Run, set[str]]:
    """A run of four 15 s tasks, once two of them run on C (its two slots): the run and those two."""
    run = hosts.trigger("hosts_four", seconds=15)
    poll_until(lambda: len(hosts.running_on(run, "c.lab")) == 2, 90, "two tasks running on C",
               every=0.5, context=lambda: hosts.diagnostics(run))  # fmt: skip
    return run, {t.task_id for t in hosts.running_on(run, "c.lab")}


def test_a_partitioned_worker_host_costs_no_double_success_and_rejoins_by_itself(hosts):
    run, cut = four_tasks_two_running_on_c(hosts)
    hosts.lab.cut("c")
    try:
        time.sleep(2 * HEARTBEAT_TIMEOUT)
    finally:
        hosts.lab.restore("c")
    restored = time.time()
    assert hosts.wait(run, 240) == "success", hosts.diagnostics(run)
    tries = hosts.tries(run)
    successes = Counter(t.task_id for t in tries if t.state == "success")
    twice = sorted(task for task, n in successes.items() if n > 1)
    assert twice == [] and len(successes) == 4, hosts.diagnostics(run)
    # the tries C ran when it was cut off did not count: they ran again
    assert cut <= {t.task_id for t in tries if t.try_number > 1}, hosts.diagnostics(run)

    consuming = poll_until(
        lambda: hosts["c"].show(WORKER, "StatusText").startswith("consuming") and time.time(),
        180, "C's worker consuming again", every=0.5, context=hosts.diagnostics,
    )  # fmt: skip
    again = hosts.trigger("hosts_fanout", seconds=1)
    first_on_c = poll_until(
        lambda: min((t.start for t in hosts.tries(again) if t.host == "c.lab" and t.start), default=None),
        120, "a task on C again", every=0.5, context=lambda: hosts.diagnostics(again),
    )  # fmt: skip
    assert hosts.wait(again, 120) == "success", hosts.diagnostics(again)
    restarts = hosts["c"].show(WORKER, "NRestarts")
    figure(
        f"partition of C for {2 * HEARTBEAT_TIMEOUT} s: C's worker consuming"
        f" {consuming - restored:.1f} s after the link came back (NRestarts={restarts}),"
        f" its next task started {first_on_c - restored:.1f} s after"
    )


def test_b_scheduler_carries_the_run_when_a_scheduler_is_stopped_for_good(hosts):
    run = hosts.trigger("hosts_chain", seconds=8)
    poll_until(lambda: any(t.task_id == "c0" and t.state == "running" for t in hosts.tries(run)), 90,
               "c0 running", every=0.5, context=lambda: hosts.diagnostics(run))  # fmt: skip
    hosts["a"].systemctl("mask", "--now", SCHEDULER, timeout=120)
    stopped = time.time()
    assert hosts["a"].show(SCHEDULER, "ActiveState") == "inactive"
    assert hosts.wait(run, 180) == "success", hosts.diagnostics(run)
    ended = time.time()
    c0, c1 = (next(t for t in hosts.tries(run) if t.task_id == task) for task in ("c0", "c1"))
    (queued_by,) = hosts.sql(
        "SELECT j.hostname FROM task_instance ti JOIN job j ON j.id = ti.queued_by_job_id"
        f" WHERE ti.dag_id = '{run.dag_id}' AND ti.run_id = '{run.run_id}' AND ti.task_id = 'c1'"
    )
    assert queued_by == ["b.lab"], hosts.diagnostics(run)
    assert c1.start > stopped
    figure(
        f"A's scheduler stopped and masked: c1 started {c1.start - stopped:.1f} s later by B's scheduler"
        f" ({c1.start - c0.end:.1f} s after c0 ended), the run ended {ended - stopped:.1f} s after the stop"
    )


def test_a_worker_host_powered_off_loses_no_run(hosts):
    run, lost = four_tasks_two_running_on_c(hosts)
    hosts.lab.pull_the_plug("c")
    killed = time.time()
    assert hosts.wait(run, 240) == "success", hosts.diagnostics(run)
    tries = hosts.tries(run)
    for task in lost:
        mine = [t for t in tries if t.task_id == task]
        assert [(t.try_number, t.host, t.state) for t in mine] == [
            (1, "c.lab", "failed"),
            (2, "b.lab", "success"),
        ], hosts.diagnostics(run)
    failed = max(t.end for t in tries if t.task_id in lost and t.try_number == 1)
    again = max(t.start for t in tries if t.task_id in lost and t.try_number == 2)
    figure(
        f"C powered off: its tries failed {failed - killed:.1f} s later, running again on B"
        f" {again - killed:.1f} s after the loss ([scheduler] task_instance_heartbeat_timeout"
        f"={HEARTBEAT_TIMEOUT} s, checked every 5 s, bounds it; shipped: 300 s)"
    )
    # nothing on A or B needed an operator: what their roles run is still active, nothing failed
    running = {
        "a": ("airflow-api-server.service", "airflow-dag-processor.service", "airflow-triggerer.service"),
        "b": (SCHEDULER, "airflow-triggerer.service", WORKER),
    }
    for short, units in running.items():
        states = {unit: hosts[short].show(unit, "ActiveState") for unit in units}
        assert set(states.values()) == {"active"}, f"{short}: {states}\n{hosts.diagnostics(run)}"
        failed = hosts[short].systemctl("list-units", "--plain", "--no-legend", "--state=failed").stdout
        assert failed.strip() == "", f"{short}: {failed}"
