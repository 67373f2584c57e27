"""Test-only fault injection, loaded by Airflow itself from the test's PYTHONPATH.

Airflow imports ``airflow_local_settings`` while it initialises, in every process. The
scheduler module cannot be imported that early (a circular import on Airflow 2.10), so a
post-import hook (tests/harness/after_import.py) patches it once it is loaded.
``AFSD_TEST_FAULT`` picks the fault, ``AFSD_TEST_OUT`` is where the fault reports what it did.
Nothing here ships.
"""

import json
import logging
import multiprocessing
import os
import subprocess
import sys

from tests.harness.after_import import SCHEDULER_MODULE, call_after_import

FAULT = os.environ.get("AFSD_TEST_FAULT", "")
OUT = os.environ.get("AFSD_TEST_OUT", "")
# Optional: a file that must exist for the fault to fire, removed when it does, so that a
# restarted service (under systemd) runs clean.
ONCE = os.environ.get("AFSD_TEST_FAULT_ONCE", "")
# "drop-first-workload": the task whose first workload the LocalExecutor loses.
DROP_TASK = os.environ.get("AFSD_TEST_DROP_TASK", "stuck")
# Optional: a file where airflow-systemd's events are recorded with their journal fields, one JSON
# object per line (outside systemd they are plain text lines, without fields).
EVENTS = os.environ.get("AFSD_TEST_EVENTS", "")
LOCAL_EXECUTOR_MODULE = "airflow.executors.local_executor"

STUBBORN_CHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
SETSID_GRANDCHILD = (
    "import os, sys, time\n"
    "if os.fork(): os._exit(0)\n"  # the intermediate exits: the grandchild is orphaned
    "os.setsid()\n"
    "os.write(1, str(os.getpid()).encode()); os.close(1)\n"  # EOF for the reader
    "time.sleep(600)\n"
)


def _report(data):
    # Written aside, then renamed: the test reads OUT as soon as it exists.
    with open(f"{OUT}.tmp", "w") as f:
        json.dump(data, f)
    os.replace(f"{OUT}.tmp", OUT)


def _raise_with_stubborn_descendants(calls=[0]):  # noqa: B006 - a counter across calls
    calls[0] += 1
    if calls[0] < 3:
        return
    child = subprocess.Popen([sys.executable, "-c", STUBBORN_CHILD])
    # Only stdout is piped (and closed by the grandchild): a pipe it kept would block run().
    grandchild = subprocess.run(
        [sys.executable, "-c", SETSID_GRANDCHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    ).stdout
    _report({"child": child.pid, "grandchild": int(grandchild)})
    if ONCE:
        os.unlink(ONCE)
    raise RuntimeError("injected fault in the scheduler loop")


def _environ_seen_by_children(calls=[0]):  # noqa: B006
    calls[0] += 1
    if calls[0] != 2:
        return
    # Like a LocalExecutor worker: a forked process that then execs a task's command.
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    worker = ctx.Process(target=_child_view, args=(queue,))
    worker.start()
    forked_environ, execd_environ = queue.get(timeout=30)
    worker.join(30)
    _report({"forked": forked_environ, "execd": execd_environ})


def _child_view(queue):
    execd = subprocess.run(["env", "-0"], capture_output=True, text=True, check=True).stdout
    queue.put((dict(os.environ), dict(line.split("=", 1) for line in execd.split("\0") if "=" in line)))


FAULTS = {
    "loop-exception": _raise_with_stubborn_descendants,
    "children-environ": _environ_seen_by_children,
}


def _remove_hook_point(module):
    # An Airflow whose scheduler module lacks the name airflow-systemd hooks.
    del module.perform_heartbeat


MODULE_FAULTS = {"no-hook-point": _remove_hook_point}


def _patch(module):
    if FAULT in MODULE_FAULTS:
        MODULE_FAULTS[FAULT](module)
        return
    fault = FAULTS[FAULT]
    original = module.SchedulerJobRunner._do_scheduling

    def _do_scheduling(self, *args, **kwargs):
        if not ONCE or os.path.exists(ONCE):
            fault()
        return original(self, *args, **kwargs)

    module.SchedulerJobRunner._do_scheduling = _do_scheduling


def _drop_first_workload(module):
    # The LocalExecutor loses the first workload of task DROP_TASK: the scheduler has set the task
    # instance queued, the executor never runs it and keeps its slots free (apache/airflow#56045).
    executor = module.LocalExecutor
    queue_workload = executor.queue_workload
    dropped = []

    def queue_workload_dropping_one(self, workload, *args, **kwargs):
        ti = getattr(workload, "ti", None)
        if ti is not None and ti.task_id == DROP_TASK and not dropped:
            dropped.append(ti.task_id)
            _report({"dropped": [ti.dag_id, ti.task_id, ti.run_id]})
            return None
        return queue_workload(self, workload, *args, **kwargs)

    executor.queue_workload = queue_workload_dropping_one


class _EventRecorder(logging.Handler):
    def emit(self, record):
        fields = {k: str(v) for k, v in vars(record).items() if k.isupper()}
        line = json.dumps({"message": record.getMessage(), "level": record.levelname, **fields})
        with open(EVENTS, "a") as f:
            f.write(line + "\n")


if EVENTS and not any(isinstance(h, _EventRecorder) for h in logging.getLogger("airflow_systemd").handlers):
    logging.getLogger("airflow_systemd").addHandler(_EventRecorder())

if FAULT == "drop-first-workload":
    if LOCAL_EXECUTOR_MODULE in sys.modules:
        _drop_first_workload(sys.modules[LOCAL_EXECUTOR_MODULE])
    else:
        call_after_import(LOCAL_EXECUTOR_MODULE, _drop_first_workload)
elif FAULT == "unsupported-version":
    # Imported while `import airflow` runs: the version airflow-systemd reads next.
    sys.modules["airflow"].__version__ = "2.9.3"
elif FAULT:
    call_after_import(SCHEDULER_MODULE, _patch)
