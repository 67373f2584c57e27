"""Apache Airflow as first-class systemd services."""

__version__ = "0.1.0"
