"""Owning every descendant, and ending them all.

Airflow's scheduler starts helpers (serve-logs, health check, executor workers, task
processes) and, in upstream #32706, a crash left them running while multiprocessing's exit
handler joined them forever. Here the main process becomes a child subreaper, so anything that
double-forks or calls setsid is re-parented to it rather than to PID 1, and
:func:`terminate_descendants` can find and end all of it without relying on any of its
children to behave.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

import psutil

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> bool:
    """Re-parent orphaned descendants to this process (Linux >= 3.4). False if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


GRACE = 2.0  # seconds between SIGTERM and SIGKILL
ROUNDS = 5
# Worst case of terminate_descendants: each round waits GRACE for SIGTERM, GRACE for SIGKILL.
CLEANUP_BOUND = ROUNDS * 2 * GRACE + 10.0


def terminate_descendants(grace: float = GRACE, rounds: int = ROUNDS) -> int:
    """SIGTERM every descendant, SIGKILL what is left after ``grace`` seconds, reap them.

    Repeats a few rounds because a dying process may fork, and a process killed mid-way may
    have left children that are re-parented to us only once it is gone. Returns how many
    processes were signalled.
    """
    signalled = 0
    for _ in range(rounds):
        procs = _descendants()
        if not procs:
            break
        signalled += len(procs)
        for proc in procs:
            _signal(proc, "terminate")
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            _signal(proc, "kill")
        psutil.wait_procs(alive, timeout=grace)
        reap_zombies()
    return signalled


def reap_zombies() -> None:
    """Collect exit statuses of children that already ended (ours, or re-parented to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except OSError as exc:  # pragma: no cover - EINTR is retried by Python itself
            if exc.errno != errno.EINTR:
                return
            continue
        if pid == 0:
            return


def _descendants() -> list[psutil.Process]:
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in procs if _status(p) != psutil.STATUS_ZOMBIE]


def _status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.Error:
        return psutil.STATUS_ZOMBIE


def _signal(proc: psutil.Process, how: str) -> None:
    with contextlib.suppress(psutil.Error):
        getattr(proc, how)()
