"""What knows Airflow: supported versions, its CLI, its logging, its metadata database, start-up."""
