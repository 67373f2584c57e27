"""The exit contract every component shares.

:func:`run` wraps a component's main function so that, whatever happens inside it:

* the process exits, promptly: 0 after a requested stop, 78 (EX_CONFIG) for what a restart
  cannot fix, 1 for any other failure -- through ``os._exit`` after clean-up, so no atexit
  handler (multiprocessing joins its children there: upstream #32706) can keep it alive;
* no descendant survives it (see :mod:`airflow_systemd.processes`);
* systemd hears about it: STATUS= names the reason, STOPPING=1 precedes a requested stop;
* a SIGABRT (what systemd's watchdog sends) first dumps every thread's stack to stderr, which
  is the journal under systemd: it shows where the process hung.

Clean-up lives in one ``finally`` that ends in ``os._exit``, so no exception path can skip it
(the anti-model is Airflow 2.6's scheduler command, whose clean-up sat after a ``yield``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from airflow_systemd import journal, last_run, processes
from airflow_systemd.airflow.db_errors import unreachable_reason
from airflow_systemd.contract import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError
from airflow_systemd.notify import Notifier

# Longest a start-up step may go without reporting progress before systemd gives up on the
# start (EXTEND_TIMEOUT_USEC). Steps that wait on purpose (for the database) report per try.
STEP_TIMEOUT = 90.0

# Exceptions that mean the configuration is wrong, by class name so that this module does not
# import Airflow or SQLAlchemy: a bad option value, a malformed database URL.
CONFIG_ERROR_NAMES = frozenset({"AirflowConfigException", "ArgumentError", "NoSuchModuleError"})

log = logging.getLogger("airflow_systemd")


class Lifecycle:
    """What a component's main function uses to report progress and to honour stops."""

    def __init__(self, name: str, notifier: Notifier, stop_timeout: float) -> None:
        self.name = name
        self.notifier = notifier
        self.stop_timeout = stop_timeout
        self.stopping = False
        self._pid = os.getpid()
        self._started = time.monotonic()

    def step(self, text: str, *, log_it: bool = True) -> None:
        """A start-up step begins: say so, and give it STEP_TIMEOUT more seconds."""
        if log_it:
            log.info("%s", text)
        self.notifier.send(f"STATUS={text}", f"EXTEND_TIMEOUT_USEC={int(STEP_TIMEOUT * 1e6)}")

    def ready(self, text: str) -> None:
        seconds = time.monotonic() - self._started
        journal.event(journal.READY, f"ready after {seconds:.1f}s: {text}", STARTUP_SECONDS=f"{seconds:.1f}")
        self.notifier.send("READY=1", f"STATUS={text}")

    def stop_requested(self, signum: int) -> None:
        """Tell systemd we are stopping and bound the graceful stop with a timer.

        Called from signal handlers, in the main process only. Airflow's own graceful stop
        (executor.end()) waits for running tasks without limit; the timer makes sure we end
        before the unit's TimeoutStopSec, and end cleanly (exit 0), not killed.
        """
        if self.stopping or os.getpid() != self._pid:
            return
        self.stopping = True
        name = signal.Signals(signum).name
        text = f"{name} received: stopping (at most {self.stop_timeout:g}s)"
        journal.event(journal.STOPPING, text, SIGNAL=name)
        self.notifier.send("STOPPING=1", f"STATUS=stopping ({name})")
        timer = threading.Timer(self.stop_timeout, self._stop_overdue)
        timer.daemon = True
        timer.start()

    def _stop_overdue(self) -> None:
        log.warning(
            "graceful stop took longer than %gs: terminating running tasks and helpers", self.stop_timeout
        )
        _leave(EXIT_OK)


def run(component: str, main: Callable[[Lifecycle], None], *, stop_timeout: float) -> NoReturn:
    """Run ``main`` of ``component`` (e.g. "scheduler") under the exit contract; never returns."""
    journal.setup(component)
    notifier = Notifier()  # first: takes NOTIFY_SOCKET & co. out of the environment
    life = Lifecycle(f"airflow-systemd {component}", notifier, stop_timeout)
    code = EXIT_FAILURE
    try:
        _arm_crash_diagnostics()
        last_run.report_restart_after_failure()
        if not processes.become_subreaper():
            log.warning("could not become a child subreaper: double-forked descendants may escape")
        _handle_stop_signals(life)
        main(life)
        code = EXIT_OK
    except SystemExit as exc:
        code = _exit_status(life, exc)
    except BaseException as exc:  # the contract covers KeyboardInterrupt and friends too
        code = _report(life, exc)
    finally:
        _leave(code)


def is_config_error(exc: BaseException) -> bool:
    """True if ``exc``, or an exception it was raised from, means the configuration is wrong."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConfigError):
            return True
        if any(cls.__name__ in CONFIG_ERROR_NAMES for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _report(life: Lifecycle, exc: BaseException) -> int:
    reason = _one_line(exc)
    if is_config_error(exc):
        # One readable line for the journal and `systemctl status`, no traceback to wade through.
        line = f"{life.name}: configuration error: {reason}"
        if journal.active():
            journal.event(journal.CONFIG_ERROR, line, level=logging.ERROR, REASON=reason)
        else:
            _stderr(line)
        life.notifier.status(f"configuration error: {reason}")
        return EXIT_CONFIG
    line = f"{life.name}: failed with {type(exc).__name__}: {reason}"
    fields = dict(EXCEPTION_TYPE=type(exc).__name__, EXCEPTION_MESSAGE=reason)
    lost = unreachable_reason(exc)
    if lost is not None:
        # The alert groups this failure with the other services' under "database unreachable".
        fields["DB_ERROR"] = lost
    if journal.active():
        journal.event(journal.CRASHED, line, level=logging.ERROR, **fields)
    else:
        _stderr(line)
    _stderr("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    life.notifier.status(f"failed: {type(exc).__name__}: {reason}")
    # Ending the descendants takes a few seconds (more for ones that ignore SIGTERM): a
    # watchdog still armed with the loop's interval could fire meanwhile, and systemd would
    # then record a watchdog kill (SIGABRT) instead of this crash and its exit status.
    life.notifier.grant_watchdog(processes.CLEANUP_BOUND)
    return EXIT_FAILURE


def _leave(code: int) -> NoReturn:
    """Terminate every descendant and exit, skipping interpreter shutdown and atexit."""
    try:
        count = processes.terminate_descendants()
        if count:
            log.info("terminated %d leftover process(es)", count)
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _exit_status(life: Lifecycle, exc: SystemExit) -> int:
    if exc.code is None:
        return EXIT_OK
    if isinstance(exc.code, int):
        return exc.code
    # Airflow's CLI raises SystemExit("message") for what the operator must change, e.g.
    # "The option [scheduler/standalone_dag_processor] must be True."
    return _report(life, ConfigError(str(exc.code)))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _handle_stop_signals(life: Lifecycle) -> None:
    """STOPPING=1 and the bounded stop, whoever handles SIGTERM/SIGINT.

    Until the component installs handlers of its own, ours stops it cleanly. After that the
    component's own graceful stop runs (Airflow's job runners, uvicorn, the webserver's
    gunicorn monitor all install theirs with ``signal.signal``): every handler installed for
    these signals is wrapped so that systemd hears STOPPING=1 and the stop timer starts first.
    One generic hook instead of one per component and Airflow version.
    """

    def on_signal(signum, frame):
        if os.getpid() != life._pid:  # a forked child that kept our handler: act as default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(EXIT_OK)

    install = signal.signal

    def install_with_stop_notice(signum, handler):
        if signum in STOP_SIGNALS and callable(handler):
            component_handler = handler

            def handler(sig, frame):
                life.stop_requested(sig)
                component_handler(sig, frame)
                if os.getpid() != life._pid and not _exists(life._pid):
                    # Airflow's handlers do nothing in a forked child (LocalExecutor workers,
                    # dag-processor helpers): the main process ends them. After SIGKILL or the
                    # watchdog's SIGABRT there is no main process any more, and systemd's
                    # SIGTERM to the rest of the cgroup would be ignored until its SIGKILL,
                    # TimeoutStopSec later, delaying the restart. A handler that returned
                    # (did not raise) ignored the signal: take the default action instead.
                    signal.signal(sig, signal.SIG_DFL)
                    os.kill(os.getpid(), sig)

        return install(signum, handler)

    signal.signal = install_with_stop_notice
    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process took the PID
        return True
    return True


_crash_stream = None


def _arm_crash_diagnostics() -> None:
    # faulthandler writes from its C signal handler, so it works even while the main thread is
    # blocked inside the database driver -- the hang the watchdog exists for. It keeps only the
    # file descriptor: give it its own copy of stderr, which nothing else will close or swap.
    global _crash_stream
    _crash_stream = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=_crash_stream, all_threads=True)


def _stderr(text: str) -> None:
    try:
        sys.__stderr__.write(text + "\n")
        sys.__stderr__.flush()
    except Exception:
        pass


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
