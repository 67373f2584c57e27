"""A task that tries to speak for the scheduler: READY=1, WATCHDOG=1, STOPPING=1 to systemd."""

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def intrude():
    import socket
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect("/run/systemd/notify")  # NOTIFY_SOCKET was scrubbed; the path is well known
            s.sendall(b"READY=1\nWATCHDOG=1\nSTOPPING=1\nSTATUS=intruder")
        time.sleep(0.5)


with DAG("afsd_notify_intruder", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    PythonOperator(task_id="intrude", python_callable=intrude)
