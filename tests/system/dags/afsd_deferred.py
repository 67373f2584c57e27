"""A deferred wait (the triggerer holds it), then a Bash task: a triggerer fault hits the wait."""

import datetime

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.sensors.time_delta import WaitSensor
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.sensors.time_delta import WaitSensor

with DAG(
    "afsd_deferred",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=5)},
):
    wait = WaitSensor(task_id="wait", time_to_wait=datetime.timedelta(seconds=25), deferrable=True)
    done = BashOperator(task_id="done", bash_command="echo waited")
    wait >> done
