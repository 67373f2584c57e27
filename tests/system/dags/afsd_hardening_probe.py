"""Does everything a typical task does that the unit's sandbox could break."""

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator

PROBE = r"""
set -eux
python3 -c 'import subprocess; print(subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout)'
echo data > /tmp/afsd-probe.txt
cp -p /tmp/afsd-probe.txt /tmp/afsd-probe-copy.txt
test -s /tmp/afsd-probe-copy.txt
nice -n 5 true
python3 -c "import os, urllib.request; print(urllib.request.urlopen(os.environ['AFSD_PROBE_URL']).status)"
echo AFSD-PROBE-OK
"""

with DAG("afsd_hardening_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    BashOperator(task_id="probe", bash_command=PROBE)
