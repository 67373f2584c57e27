"""The scheduler: `airflow scheduler`, plus how many task instances each loop queued and, on
Airflow 3, the stuck-work check (:mod:`.stuck_work`) with the age of the oldest queued task, and
the execution API check (:mod:`.execution_api`), whose complaint, while tasks cannot reach it,
comes first in what the scheduler adds to STATUS=.

``SchedulerJobRunner._do_scheduling`` returns that count in Airflow 2.10 and 3.x.
"""

from __future__ import annotations

import functools

from airflow_systemd.airflow import support
from airflow_systemd.services import execution_api, stuck_work
from airflow_systemd.services.job import JobService


def _queued_counter(module):
    runner = module.SchedulerJobRunner
    support.require_attributes(runner, ("_do_scheduling",), "SchedulerJobRunner")
    check = stuck_work.install(runner)
    api = execution_api.install(runner)
    queued = [0]
    do_scheduling = runner._do_scheduling

    @functools.wraps(do_scheduling)
    def do_scheduling_and_count(self, *args, **kwargs):
        queued[0] = do_scheduling(self, *args, **kwargs)
        return queued[0]

    runner._do_scheduling = do_scheduling_and_count

    def activity() -> str:
        parts = (
            api.status() if api else "",
            f"{queued[0]} task(s) queued by the last loop",
            check.status() if check else "",
        )
        return ", ".join(part for part in parts if part)

    return activity


SERVICE = JobService(
    command="scheduler",
    title="scheduler",
    loop_module="airflow.jobs.scheduler_job_runner",
    heartbeat=("scheduler", "scheduler_heartbeat_sec"),
    activity=_queued_counter,
)
