"""Which processes are still there: what every tier asks after stopping something it started."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended: it only waits to be reaped)."""
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.NoSuchProcess:
            pass
    return running


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now; none once ``pid`` itself is gone.

    Callers remember what they saw: a descendant that left the tree (a double fork, a setsid)
    is only found again by its PID.
    """
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()
