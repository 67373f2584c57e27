"""The triggerer: `airflow triggerer`; its trigger loop heartbeats once per iteration."""

from airflow_systemd.services.job import JobService

SERVICE = JobService(
    command="triggerer",
    title="triggerer",
    loop_module="airflow.jobs.triggerer_job_runner",
    heartbeat=("triggerer", "job_heartbeat_sec"),
)
