"""Tasks for the CeleryExecutor's workers: each returns the cgroup it ran in (its XCom).

``where`` (Python, queue ``default``) sleeps ``seconds`` (the run's conf, default 0) so that a
stop or a fault can hit it; then ``shell`` (Bash, ``default``) and ``other`` (Bash, queue
``second``, served only by airflow-celery-worker@second). /proc/self/cgroup names the unit
whose cgroup the task process is in: the test reads it back from the XComs.
"""

import datetime

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def where(params):
    import time

    time.sleep(float(params["seconds"]))
    with open("/proc/self/cgroup") as f:
        return f.read().strip()


with DAG(
    "afsd_celery",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    params={"seconds": 0},
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=5)},
):
    first = PythonOperator(task_id="where", python_callable=where)
    shell = BashOperator(task_id="shell", bash_command="cat /proc/self/cgroup")
    other = BashOperator(task_id="other", bash_command="cat /proc/self/cgroup", queue="second")
    first >> [shell, other]
