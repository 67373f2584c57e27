"""Polling for a condition with a deadline: the tests' and the bench's one loop for it."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    *,
    every: float = 0.2,
    context: Callable[[], str] = lambda: "",
    error: type[Exception] = AssertionError,
) -> object:
    """PREDICATE's first true value, asked every EVERY seconds; ERROR naming WHAT (and
    CONTEXT's text, built only then) once TIMEOUT seconds have passed without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g}s waiting for {what}{context()}")
        time.sleep(every)
