"""One Bash task, ``stuck``: the fault drop-first-workload makes the LocalExecutor lose its first
workload, so that it stays ``queued`` with free slots (tests/system/test_stuck_work.py)."""

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("afsd_stuck", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    BashOperator(task_id="stuck", bash_command="echo moved")
