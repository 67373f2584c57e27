"""The services: one probe (READY/WATCHDOG/STATUS) and one module per Airflow service with its hook points."""
