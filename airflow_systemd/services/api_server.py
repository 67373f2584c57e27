"""The API server (Airflow 3): `airflow api-server`; its health endpoint needs no login."""

from airflow_systemd.services.http import HttpService

SERVICE = HttpService(
    command="api-server",
    title="API server",
    health_path="/api/v2/monitor/health",
    host_arg="host",
    # The execution API (what tasks call) builds its routes on its first request: before READY=1.
    warm_paths=("/execution/health",),
)
