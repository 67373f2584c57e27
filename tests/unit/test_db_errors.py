"""Which failures mean "the database is unreachable" (airflow_systemd/airflow/db_errors.py),
on the errors SQLAlchemy and psycopg2 really raise."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy.exc import OperationalError

from airflow_systemd.airflow.db_errors import unreachable_reason
from tests.harness.pgcluster import free_port


def refused() -> OperationalError:
    """A real connect to a port nothing listens on."""
    engine = sqlalchemy.create_engine(f"postgresql+psycopg2://airflow@127.0.0.1:{free_port()}/airflow")
    with pytest.raises(OperationalError) as caught:
        engine.connect()
    return caught.value


def test_a_refused_connection_is_unreachable_with_the_drivers_words():
    reason = unreachable_reason(refused())
    assert reason is not None and "Connection refused" in reason
    assert "Background on this error" not in reason


def test_an_error_raised_from_a_lost_connection_is_unreachable_too():
    try:
        try:
            raise refused()
        except OperationalError as exc:
            raise RuntimeError("the scheduler loop gave up") from exc
    except RuntimeError as outer:
        assert "Connection refused" in unreachable_reason(outer)


def test_errors_no_retry_fixes_and_other_errors_are_not():
    denied = OperationalError(
        "SELECT 1", {}, Exception('FATAL:  password authentication failed for user "x"')
    )
    assert unreachable_reason(denied) is None
    assert unreachable_reason(ValueError("Connection refused")) is None
    assert unreachable_reason(None) is None
