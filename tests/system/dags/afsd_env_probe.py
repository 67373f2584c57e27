"""Writes down what its task sees (tests/harness/task_environment.py compares it with a plain
`airflow dags test` from an activated virtualenv)."""

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def probe():
    import json
    import os
    import pwd
    import resource
    import shutil
    import socket
    import subprocess
    import tempfile

    def which(name):
        path = shutil.which(name)
        return os.path.realpath(path) if path else None

    def interpreter_prefix(name):
        if not shutil.which(name):
            return None
        code = "import sys; print(sys.prefix)"
        return subprocess.run([name, "-c", code], capture_output=True, text=True).stdout.strip()

    def status(field):
        with open("/proc/self/status") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(field + ":")), None)

    umask = os.umask(0)
    os.umask(umask)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "new")
        open(path, "w").close()
        mode = oct(os.stat(path).st_mode & 0o777)
    facts = {
        name: os.environ.get(name) for name in ("USER", "LOGNAME", "HOME", "SHELL", "LANG", "LC_ALL", "TZ")
    }
    facts.update(
        {
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "PATH": os.environ.get("PATH"),
            "VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV"),
            "python": which("python"),
            "python3": which("python3"),
            "pip": which("pip"),
            "airflow": which("airflow"),
            "sys.prefix of python": interpreter_prefix("python"),
            "sys.prefix of python3": interpreter_prefix("python3"),
            "umask": oct(umask),
            "mode of a new file": mode,
            "TMPDIR": os.environ.get("TMPDIR"),
            "/tmp shared with the host": os.path.exists("/tmp/afsd-env-host-marker"),
            "hostname": socket.gethostname(),
            "nice": os.nice(0),
            "NoNewPrivs": status("NoNewPrivs"),
            "CapEff": status("CapEff"),
        }
    )
    for name in ("NOFILE", "NPROC", "CORE", "STACK", "MEMLOCK", "AS"):
        soft, hard = resource.getrlimit(getattr(resource, f"RLIMIT_{name}"))
        facts[f"limit {name}"] = f"{soft}/{hard}"
    shown = set(facts) | {"PWD", "OLDPWD", "SHLVL", "_"}
    facts["other variables"] = " ".join(
        sorted(n for n in os.environ if n not in shown and not n.startswith(("AIRFLOW", "AFSD_")))
    )
    with open(os.path.join(os.environ["AIRFLOW_HOME"], "afsd-env-probe.json"), "w") as f:
        json.dump(facts, f)


with DAG("afsd_env_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    PythonOperator(task_id="probe", python_callable=probe)
