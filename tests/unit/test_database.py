"""The start-up wait's pacing: how long after its database is back a service notices."""

from itertools import islice

from airflow_systemd.airflow import database


def test_retries_back_off_to_at_most_five_seconds():
    assert list(islice(database.delays(), 8)) == [1, 2, 4, 5, 5, 5, 5, 5]


def test_only_attempts_at_powers_of_two_are_logged():
    assert [n for n in range(1, 130) if database.logged(n)] == [1, 2, 4, 8, 16, 32, 64, 128]
