"""One task that runs far longer than any stop timeout."""

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator

with DAG("afsd_long_task", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    BashOperator(task_id="sleep", bash_command="sleep 600")
