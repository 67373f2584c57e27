"""What a task sees under the units, next to what it sees under a plain `airflow dags test`
run from an activated virtualenv (issue 17).

Both run the DAG ``afsd_env_probe`` (tests/system/dags) as the airflow user, inside one
sandbox with one database: the units' task through the scheduler (LocalExecutor), the plain
one from ``su - airflow`` (a login shell, as an operator would open one), ``. VENV/bin/activate``
and ``airflow dags test``. The probe writes what it found to AIRFLOW_HOME/afsd-env-probe.json.

``scripts/task-environment`` prints the table (docs/task-environment.md holds the last one);
``tests/system/test_task_environment.py`` asserts that every difference is one of
:data:`KEPT`, each kept on purpose, with its reason.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tests.harness.deployment import SCHEDULER, VENV, Deployment

PROBE_DAG = "afsd_env_probe"
PROBE_FILE = "/var/lib/airflow/afsd-env-probe.json"
HOST_MARKER = "/tmp/afsd-env-host-marker"

# What must be the same: what a DAG author relies on when the virtualenv is activated.
SAME = (
    "user",
    "VIRTUAL_ENV",
    "python",
    "python3",
    "pip",
    "airflow",
    "sys.prefix of python",
    "sys.prefix of python3",
    "TMPDIR",
    "hostname",
    "nice",
    "LC_ALL",
    "TZ",
)

# Every difference the units keep, and why (the docs' section for DAG authors lists them).
KEPT = {
    "PATH": "the virtualenv's bin first, then systemd's default path, not the login shell's: the same "
    "programs, /usr/games aside",
    "HOME": "systemd sets the airflow user's home for User=airflow; a login shell does too",
    "SHELL": "a login shell sets it; systemd does not (bash is still found on PATH)",
    "umask": "UMask=0027: files a task creates are not readable by other accounts (a shell's is 0022)",
    "mode of a new file": "follows from UMask=0027: 0640, not 0644",
    "/tmp shared with the host": "PrivateTmp=yes: the unit's tasks share one /tmp, which no other unit or "
    "login sees; hand files to other units through AIRFLOW_HOME",
    "NoNewPrivs": "NoNewPrivileges=yes: sudo and set-uid programs do not work (hardening-relaxed.conf)",
    "limit NOFILE": "systemd's default for services, 1024 soft / 524288 hard, capped by the host's "
    "(raise it with LimitNOFILE=)",
    "limit CORE": "LimitCORE=0: a watchdog kill writes stacks to the journal, not a core",
    "limit NPROC": "systemd's default for services, which differs from a login session's",
    "limit MEMLOCK": "systemd's default for services, which differs from a login session's",
    "other variables": "systemd's own (INVOCATION_ID, JOURNAL_STREAM, SYSTEMD_EXEC_PID, STATE_DIRECTORY and "
    "the like), PGCONNECT_TIMEOUT=10 (the entrypoint's bound on libpq connects, which a task's own "
    "PostgreSQL connections inherit; set it in /etc/default/airflow to change it); the login "
    "session's (MAIL, XDG_*, PS1)",
    "LANG": "systemd's locale (/etc/locale.conf, else C.UTF-8); a login shell's comes from "
    "/etc/default/locale through PAM and is unset where that file is missing",
    "USER": "systemd sets USER and LOGNAME for User=; a login shell does too",
    "LOGNAME": "systemd sets USER and LOGNAME for User=; a login shell does too",
    "CapEff": "CapabilityBoundingSet= (empty) under the unit; none either way for the airflow user",
}


def facts_under_the_units(d: Deployment, timeout: float = 240) -> dict:
    """The probe's task, run by the scheduler unit."""
    d.sb.exec("rm", "-f", PROBE_FILE)
    d.sb.exec("touch", HOST_MARKER)
    dag = d.add_dag(PROBE_DAG)
    run = d.trigger(dag)
    try:
        d.wait_for(lambda: d.run_state(dag, run) in ("success", "failed"), timeout, "the probe's run")
        assert d.run_state(dag, run) == "success", d.journal_tail(SCHEDULER, 80)
    finally:
        d.retire(dag)
    return json.loads(d.sb.exec("cat", PROBE_FILE).stdout)


def facts_plain(d: Deployment) -> dict:
    """The same task under `airflow dags test`, from a login shell with the virtualenv activated."""
    d.sb.exec("rm", "-f", PROBE_FILE)
    d.sb.exec("touch", HOST_MARKER)
    settings = {
        "AIRFLOW_HOME": "/var/lib/airflow",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": d.pg.url(d.db),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    exports = " ".join(f"{k}={v}" for k, v in settings.items())
    script = f". {VENV}/bin/activate && cd && export {exports} && airflow dags test {PROBE_DAG}"
    done = d.sb.exec("su", "-", "airflow", "-s", "/bin/bash", "-c", script, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(d.sb.exec("cat", PROBE_FILE).stdout)


def compare(units: dict, plain: dict) -> list[tuple[str, object, object, str]]:
    """(what, under the units, plain, why it may differ) for every fact."""
    rows = []
    for key in sorted(set(units) | set(plain), key=lambda k: (k not in SAME, k)):
        a, b = units.get(key), plain.get(key)
        rows.append((key, a, b, "" if a == b else KEPT.get(key, "NOT EXPLAINED")))
    return rows


def table(rows, venv: str = str(VENV)) -> str:
    def cell(value: object) -> str:
        text = "(unset)" if value is None else str(value)
        return "`" + text.replace(venv, "$VENV").replace("|", "\\|") + "`"

    lines = ["| | under the units | plain, venv activated | why they differ |", "|---|---|---|---|"]
    lines += [f"| {key} | {cell(a)} | {cell(b)} | {why} |" for key, a, b, why in rows]
    return "\n".join(lines)


def main() -> int:
    """Boot a sandbox, install the units, run the probe both ways, print the table."""
    from tests.harness.airflow_env import create_migrated_database
    from tests.harness.pgcluster import PgCluster
    from tests.harness.sandbox import Sandbox

    if os.geteuid() != 0:
        print("task-environment: run it as root (it boots a systemd container)", file=sys.stderr)
        return 1
    pg = PgCluster().init()
    pg.start()
    sb = Sandbox(name=f"afsdtaskenv{os.getpid()}")
    try:
        create_migrated_database(pg, "airflow")
        sb.up()
        d = Deployment(sb, pg, "airflow")
        d.install()
        sb.systemctl("start", SCHEDULER)
        d.start_companions()
        t0 = time.monotonic()
        units = facts_under_the_units(d)
        plain = facts_plain(d)
        print(
            f"Airflow under systemd {sb.exec('systemctl', '--version').stdout.split()[1]}, "
            f"$VENV = {VENV}, {time.monotonic() - t0:.0f} s\n"
        )
        print(table(compare(units, plain)))
    finally:
        sb.down()
        pg.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
