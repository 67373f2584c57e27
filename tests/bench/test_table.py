"""The bench's table from its figures: each row says what it was measured with."""

from __future__ import annotations

import argparse

from bench.installation import hang_rows

SERVICES = ("airflow-scheduler", "airflow-api-server", "airflow-triggerer", "airflow-celery-worker")


def test_each_hang_row_names_the_watchdog_its_service_ran_with():
    caught = {"ours": {"caught_s": 2.0, "new_process_s": 12.0, "budget_s": 25.0}}
    rows = hang_rows(dict.fromkeys(SERVICES, caught), argparse.Namespace(watchdog=4.0))
    ours = {measure.split(" (")[0]: text for measure, text, *_ in rows}
    assert ours == {
        "hang caught, scheduler": "2.0 s (new process 12.0 s) (WatchdogSec=4s)",
        "hang caught, api-server": "2.0 s (new process 12.0 s) (WatchdogSec=30s, shipped)",
        "hang caught, triggerer": "2.0 s (new process 12.0 s) (WatchdogSec=4s)",
        "hang caught, celery-worker": "2.0 s (new process 12.0 s) (WatchdogSec=4s)",
    }
