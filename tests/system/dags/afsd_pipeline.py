"""Two dependent tasks, Python then Bash; the first runs long enough to be hit by a fault."""

import datetime
import os

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator


def compute():
    import time

    time.sleep(float(os.environ.get("AFSD_PIPELINE_SECONDS", "1")))
    return 42


with DAG(
    "afsd_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=5)},
):
    first = PythonOperator(task_id="compute", python_callable=compute)
    second = BashOperator(task_id="report", bash_command="echo computed {{ ti.xcom_pull('compute') }}")
    first >> second
