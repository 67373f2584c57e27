"""Bench-only loop counter, loaded by Airflow itself from the bench's PYTHONPATH. Never shipped.

Airflow imports ``airflow_local_settings`` in every process while it initialises. The scheduler
module cannot be imported that early (a circular import on Airflow 2.10), so a post-import hook
(tests/harness/after_import.py, which is why the bench puts the checkout on PYTHONPATH too)
wraps its ``perform_heartbeat`` once it is loaded: the loop calls it once at the end of every
iteration. Plain `airflow scheduler` and `airflow-systemd scheduler` (whose own hook then wraps
this one) load the same wrapper, so both are counted alike.

The wrapper keeps (iterations, end of the first, end of the last) on CLOCK_MONOTONIC, which the
bench shares, in a file the bench created and that is mapped in memory here: no system call per
iteration, so counting costs about a microsecond and cannot hide the difference being measured.
"""

import functools
import mmap
import os
import struct
import time

from tests.harness.after_import import SCHEDULER_MODULE, call_after_import

LOOP_FILE = os.environ.get("AFSD_BENCH_LOOP_FILE", "")
RECORD = struct.Struct("=Qdd")  # iterations, first end, last end; bench/scheduler_bench.py reads it


def _patch(module):
    with open(LOOP_FILE, "r+b") as f:
        shared = mmap.mmap(f.fileno(), RECORD.size)
    original = module.perform_heartbeat
    count, first = 0, 0.0

    @functools.wraps(original)
    def perform_heartbeat_counted(*args, **kwargs):
        nonlocal count, first
        original(*args, **kwargs)
        now = time.monotonic()
        count += 1
        first = first or now
        # One copy of a packed record: pack_into would zero the mapped bytes first, and a
        # reader catching that moment would see no iterations at all.
        shared[: RECORD.size] = RECORD.pack(count, first, now)

    module.perform_heartbeat = perform_heartbeat_counted


if LOOP_FILE:
    call_after_import(SCHEDULER_MODULE, _patch)
