"""The unit tier runs in every supported Airflow's virtualenv."""

import logging
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


class Events(logging.Handler):
    """The records airflow_systemd's loggers emit; ``ids()``: their events' MESSAGE_IDs."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def ids(self) -> list[str]:
        return [r.MESSAGE_ID for r in self.records if hasattr(r, "MESSAGE_ID")]


@pytest.fixture
def events():
    """An Events handler on the airflow_systemd logger at INFO, for this test."""
    handler = Events()
    logger = logging.getLogger("airflow_systemd")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
