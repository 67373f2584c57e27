"""Airflow services built on a Job loop: scheduler, dag-processor, triggerer.

Each calls ``perform_heartbeat`` (imported into its own module) once at the end of every loop
iteration, and passes it the callback that Job.heartbeat runs right after committing the
heartbeat. Wrapping that one name in the service's module is the whole hook: the wrapper
reports the iteration to :class:`JobLoop`, which feeds the :class:`~.probe.Probe`, and wraps the
callback to report the committed heartbeat. ``perform_heartbeat`` has this meaning in Airflow
2.10 and 3.x.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from airflow_systemd import journal
from airflow_systemd.airflow import startup, support
from airflow_systemd.lifecycle import Lifecycle
from airflow_systemd.services.probe import Probe, require_watchdog_margin


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

    section, key = service.heartbeat
    require_watchdog_margin(
        life.notifier.watchdog_interval, conf.getfloat(section, key), f"[{section}] {key}"
    )
    install_hooks(life, service)
    life.step(f"starting the {service.title}")
    support.run_airflow_command(service.command, airflow_args)


def install_hooks(life: Lifecycle, service: JobService) -> JobLoop:
    module = importlib.import_module(service.loop_module)
    support.require_attributes(module, ("perform_heartbeat",), service.loop_module)
    activity = service.activity(module) if service.activity else (lambda: "")
    loop = JobLoop(Probe(life), life.name, activity=activity)
    perform_heartbeat = module.perform_heartbeat

    @functools.wraps(perform_heartbeat)
    def perform_heartbeat_then_report(job, heartbeat_callback, only_if_necessary):
        def heartbeat_committed(*args, **kwargs):
            heartbeat_callback(*args, **kwargs)
            loop.heartbeat_committed()

        perform_heartbeat(
            job=job, heartbeat_callback=heartbeat_committed, only_if_necessary=only_if_necessary
        )
        # Job.heartbeat swallows the OperationalError of a failed heartbeat and sets this flag.
        loop.heartbeat_failed(bool(getattr(job, "heartbeat_failed", False)))
        loop.iteration_done()

    module.perform_heartbeat = perform_heartbeat_then_report
    return loop


class JobLoop:
    """What a job loop proves: iterations, and heartbeats committed to the database."""

    def __init__(self, probe: Probe, name: str, activity: Callable[[], str] = lambda: "") -> None:
        self.probe = probe
        self._name = name
        self._activity = activity
        self.iterations = 0
        self._last_iteration: float | None = None
        self._failing = False

    def heartbeat_committed(self) -> None:
        self.probe.progressed()

    def heartbeat_failed(self, failed: bool) -> None:
        """Say once per streak that the heartbeat fails: the watchdog kill that follows if it
        lasts then has a cause in the journal (the alert groups it as "DB unreachable")."""
        if failed and not self._failing:
            journal.event(
                journal.HEARTBEAT_FAILED,
                f"{self._name}: the heartbeat failed with a database error: no watchdog ping until "
                "one succeeds",
                level=logging.WARNING,
            )
        elif self._failing and not failed:
            journal.log.info("%s: the heartbeat succeeds again", self._name)
        self._failing = failed

    def iteration_done(self) -> None:
        # The first iteration ran its queries and commits: the database works (the probe sends
        # READY=1 and counts it as progress).
        now = self.probe.now()
        self.iterations += 1
        self._check_iteration_time(now)
        self.probe.round_done(lambda: self._status(now), now)

    def _check_iteration_time(self, now: float) -> None:
        # The loop feeds the watchdog once per iteration: one that takes more than half of
        # WatchdogSec= is a warning before the kill. The first one includes start-up: not counted.
        previous, self._last_iteration = self._last_iteration, now
        interval = self.probe.interval
        if previous is None or interval is None or now - previous <= interval / 2:
            return
        journal.event(
            journal.WATCHDOG_NEAR_MISS,
            f"a loop iteration took {now - previous:.1f}s, more than half of WatchdogSec={interval:g}s: "
            f"at {interval:g}s the watchdog kills {self._name}",
            level=logging.WARNING,
            ITERATION_SECONDS=f"{now - previous:.3f}",
            WATCHDOG_SECONDS=f"{interval:g}",
        )

    def _status(self, now: float) -> str:
        age = now - (self.probe.last_progress or now)
        activity = self._activity()
        return f"running: loop {self.iterations}, heartbeat {age:.0f}s ago" + (
            f", {activity}" if activity else ""
        )
