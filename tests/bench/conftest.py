"""The quick run's table in the run's terminal summary, where CI keeps it."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter) -> None:
    module = sys.modules.get("tests.bench.test_quick_bench")
    for text in getattr(module, "OUTPUT", ()):
        terminalreporter.write_sep("-", "python -m bench --quick")
        terminalreporter.write_line(text)
