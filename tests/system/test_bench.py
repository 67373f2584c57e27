"""`python -m bench --quick`, the smoke run of the benchmark: every row of its table has a figure.

No timing is asserted (the machine is shared): only that the entry point runs end to end on a
real systemd and that each row measured something. The bench boots a sandbox of its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from bench.installation import HELM, rows
from tests.harness.deployment import REPO


def test_the_quick_bench_fills_every_row_of_its_table(tmp_path, sandbox):
    # `sandbox` only for its checks (root, systemd-nspawn): the bench boots its own container.
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(out.read_text())
    print(f"\n{done.stdout.split(chr(10) + '{')[0]}")
    table = rows(figures, _Args(figures["settings"]))
    assert len(table) >= 13
    for measure, ours, alternative, figure, _ratio in table:
        assert re.search(r"\d", ours), f"{measure}: ours has no figure"
        if figure != "(no readiness)":
            assert re.search(r"\d", figure), f"{measure}: {alternative} has no figure ({figure!r})"
    assert set(figures["hang"]) == {
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-api-server",
        "airflow-triggerer",
        "airflow-celery-worker",
    }
    assert set(HELM) >= set(figures["hang"])


class _Args:
    def __init__(self, settings: dict) -> None:
        self.__dict__.update(settings)
