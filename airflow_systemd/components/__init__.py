"""One module per Airflow service: its hook points into Airflow, nothing else."""
