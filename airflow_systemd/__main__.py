from airflow_systemd.cli import main

main()
