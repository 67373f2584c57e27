"""The unit tier runs in every supported Airflow's virtualenv."""

from importlib import util

import pytest

from tests.harness.notify_peer import NotifyPeer

# Celery workers are Airflow 3.3's only: the virtualenvs of Airflow 2 have no Celery. There the
# tests of the consumer bootstep are not collected, rather than skipped (with CI=true a skip fails).
if util.find_spec("celery") is None:
    collect_ignore = ["test_celery_step.py"]


@pytest.fixture
def peer(tmp_path, monkeypatch):
    """A notify socket as systemd's, with a 4 s watchdog, in this test's environment."""
    peer = NotifyPeer(tmp_path / "notify")
    for name, value in peer.environ(watchdog_usec=4_000_000).items():
        monkeypatch.setenv(name, value)
    yield peer
    peer.close()
