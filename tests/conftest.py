"""Shared by every tier: with CI=true a skipped test is a failure, never a pass."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = item.path.parent.name
        if tier in ("integration", "system"):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {report.longrepr}"
