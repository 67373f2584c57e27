"""The webserver (Airflow 2.10): `airflow webserver`, which runs gunicorn; /health needs no login."""

from airflow_systemd.services.http import HttpService

SERVICE = HttpService(
    command="webserver",
    title="webserver",
    health_path="/health",
    host_arg="hostname",
)
