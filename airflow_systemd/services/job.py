"""Airflow services built on a Job loop: scheduler, dag-processor, triggerer.

Each calls ``perform_heartbeat`` (imported into its own module) once at the end of every loop
iteration, and passes it the callback that Job.heartbeat runs right after committing the
heartbeat. Wrapping that one name in the service's module is the whole hook: the wrapper
reports the iteration to the :class:`LoopProbe` and wraps the callback to report the committed
heartbeat. ``perform_heartbeat`` has this meaning in Airflow 2.10 and 3.x.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from airflow_systemd.airflow import startup, support
from airflow_systemd.lifecycle import Lifecycle
from airflow_systemd.notify import Watchdog
from airflow_systemd.services.probe import LoopProbe, require_watchdog_margin


@dataclass(frozen=True)
class JobService:
    command: str  # the `airflow` subcommand
    title: str  # for STATUS= and logs
    loop_module: str  # the module whose perform_heartbeat ends each loop iteration
    heartbeat: tuple[str, str]  # the [section] key that sets this job's heartbeat interval
    # Optional extra hooks (module, probe) -> status text source, e.g. the scheduler's counts.
    activity: Callable[[object], Callable[[], str]] | None = None


def run(life: Lifecycle, service: JobService, airflow_args: list[str]) -> None:
    startup.prepare(life, service.command, airflow_args)
    from airflow.configuration import conf

    watchdog = Watchdog(life.notifier)
    section, key = service.heartbeat
    require_watchdog_margin(watchdog, conf.getfloat(section, key), f"[{section}] {key}")
    install_hooks(life, watchdog, service)
    life.step(f"starting the {service.title}")
    support.run_airflow_command(service.command, airflow_args)


def install_hooks(life: Lifecycle, watchdog: Watchdog, service: JobService) -> LoopProbe:
    module = importlib.import_module(service.loop_module)
    support.require_attributes(module, ("perform_heartbeat",), service.loop_module)
    activity = service.activity(module) if service.activity else (lambda: "")
    probe = LoopProbe(life, watchdog, activity=activity)
    perform_heartbeat = module.perform_heartbeat

    @functools.wraps(perform_heartbeat)
    def perform_heartbeat_then_report(job, heartbeat_callback, only_if_necessary):
        def heartbeat_committed(*args, **kwargs):
            heartbeat_callback(*args, **kwargs)
            probe.heartbeat_committed()

        perform_heartbeat(
            job=job, heartbeat_callback=heartbeat_committed, only_if_necessary=only_if_necessary
        )
        probe.iteration_done()

    module.perform_heartbeat = perform_heartbeat_then_report
    return probe
