"""The DAG processor: `airflow dag-processor` (in 2.10 the optional standalone one).

Its parsing loop calls the heartbeat that DagProcessorJobRunner sets up with
``perform_heartbeat`` from its own module, once per loop.
"""

# Airflow 2.10.5's DagFileProcessorManager calls multiprocessing.connection.wait() without
# importing the submodule; plain `airflow dag-processor` then dies at start with
# "AttributeError: module 'multiprocessing' has no attribute 'connection'" (seen here with the
# pinned 2.10.5 set). Importing it is harmless on every version.
import multiprocessing.connection  # noqa: F401

from airflow_systemd.services.job import JobService

SERVICE = JobService(
    command="dag-processor",
    title="DAG processor",
    loop_module="airflow.jobs.dag_processor_job_runner",
    # Job.heartrate for job types other than scheduler and triggerer.
    heartbeat=("scheduler", "job_heartbeat_sec"),
)
