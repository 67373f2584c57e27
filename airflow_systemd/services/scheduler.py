"""The scheduler: `airflow scheduler`, plus how many task instances each loop queued.

``SchedulerJobRunner._do_scheduling`` returns that count in Airflow 2.10 and 3.x.
"""

from __future__ import annotations

import functools

from airflow_systemd.airflow import support
from airflow_systemd.services.job import JobService


def _queued_counter(module):
    runner = module.SchedulerJobRunner
    support.require_attributes(runner, ("_do_scheduling",), "SchedulerJobRunner")
    queued = [0]
    do_scheduling = runner._do_scheduling

    @functools.wraps(do_scheduling)
    def do_scheduling_and_count(self, *args, **kwargs):
        queued[0] = do_scheduling(self, *args, **kwargs)
        return queued[0]

    runner._do_scheduling = do_scheduling_and_count
    return lambda: f"{queued[0]} task(s) queued by the last loop"


SERVICE = JobService(
    command="scheduler",
    title="scheduler",
    loop_module="airflow.jobs.scheduler_job_runner",
    heartbeat=("scheduler", "scheduler_heartbeat_sec"),
    activity=_queued_counter,
)
