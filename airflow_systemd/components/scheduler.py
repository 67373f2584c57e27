"""The scheduler: Airflow's own `airflow scheduler`, observed through four hook points.

* ``perform_heartbeat``, as the scheduler module calls it once at the end of every loop
  iteration: the loop is turning (READY after the first, WATCHDOG, STATUS);
* ``SchedulerJobRunner.heartbeat_callback``: Airflow runs it right after committing the job
  heartbeat, so it proves the database takes writes;
* ``SchedulerJobRunner._do_scheduling``: how many task instances the last loop queued;
* ``SchedulerJobRunner._exit_gracefully``: Airflow's SIGTERM/SIGINT handler, which replaces
  ours once the job runs: STOPPING=1 and the bounded stop must still happen.

All four exist with these meanings in Airflow 2.10 and 3.x.
"""

from __future__ import annotations

import functools

from airflow_systemd import airflow_support, database
from airflow_systemd.lifecycle import Lifecycle
from airflow_systemd.notify import Watchdog
from airflow_systemd.probe import LoopProbe, require_watchdog_margin

RUNNER_HOOKS = ("heartbeat_callback", "_do_scheduling", "_exit_gracefully")


def main(life: Lifecycle, airflow_args: list[str]) -> None:
    life.step("loading Airflow")
    database.set_connect_timeout()
    airflow_support.load_airflow()
    from airflow.configuration import conf

    airflow_support.validate_arguments("scheduler", airflow_args)
    watchdog = Watchdog(life.notifier)
    heartbeat = conf.getfloat("scheduler", "scheduler_heartbeat_sec")
    require_watchdog_margin(watchdog, heartbeat, "[scheduler] scheduler_heartbeat_sec")

    life.step("connecting to the metadata database")
    database.wait_until_reachable(life)
    life.step("checking the metadata database schema")
    database.require_current_schema()

    install_hooks(life, watchdog)
    life.step("starting the scheduler")
    airflow_support.run_airflow_command("scheduler", airflow_args)


def install_hooks(life: Lifecycle, watchdog: Watchdog) -> LoopProbe:
    from airflow.jobs import scheduler_job_runner as module

    runner = module.SchedulerJobRunner
    airflow_support.require_attributes(runner, RUNNER_HOOKS, "SchedulerJobRunner")
    airflow_support.require_attributes(module, ("perform_heartbeat",), "the scheduler module")

    queued = [0]
    probe = LoopProbe(life, watchdog, activity=lambda: f"{queued[0]} task(s) queued by the last loop")

    perform_heartbeat = module.perform_heartbeat

    @functools.wraps(perform_heartbeat)
    def perform_heartbeat_then_report(*args, **kwargs):
        perform_heartbeat(*args, **kwargs)
        probe.iteration_done()

    heartbeat_callback = runner.heartbeat_callback

    @functools.wraps(heartbeat_callback)
    def heartbeat_callback_then_report(self, *args, **kwargs):
        heartbeat_callback(self, *args, **kwargs)
        probe.heartbeat_committed()

    do_scheduling = runner._do_scheduling

    @functools.wraps(do_scheduling)
    def do_scheduling_and_count(self, *args, **kwargs):
        queued[0] = do_scheduling(self, *args, **kwargs)
        return queued[0]

    exit_gracefully = runner._exit_gracefully

    @functools.wraps(exit_gracefully)
    def exit_gracefully_bounded(self, signum, frame):
        life.stop_requested(signum)
        return exit_gracefully(self, signum, frame)

    module.perform_heartbeat = perform_heartbeat_then_report
    runner.heartbeat_callback = heartbeat_callback_then_report
    runner._do_scheduling = do_scheduling_and_count
    runner._exit_gracefully = exit_gracefully_bounded
    return probe
