"""The unit tier runs in every supported Airflow's virtualenv."""

from importlib import util

# Celery workers are Airflow 3.3's only: the virtualenvs of Airflow 2 have no Celery. There the
# tests of the consumer bootstep are not collected, rather than skipped (with CI=true a skip fails).
if util.find_spec("celery") is None:
    collect_ignore = ["test_celery_step.py"]
