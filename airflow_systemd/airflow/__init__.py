"""What knows Airflow: version support, the database, start-up, and the logging takeover."""
