"""What DAG authors expect of a task's environment: the operators that need the Airflow
virtualenv's `python` and `airflow` on PATH, and tasks that hand a file to each other (issue 17).
"""

import os
import sys

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import (
        ExternalPythonOperator,
        PythonVirtualenvOperator,
    )
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import ExternalPythonOperator, PythonVirtualenvOperator

# The interpreter of the virtualenv Airflow runs from, as a DAG author names it.
AIRFLOW_PYTHON = os.path.join(os.environ.get("VIRTUAL_ENV") or sys.prefix, "bin", "python")
HANDOFF = "/tmp/afsd-handoff-{{ run_id }}.txt"
# `airflow` and `python` are the virtualenv's, with its libraries (pendulum is not Debian's).
# Airflow 3 hides the metadata database from tasks by handing their processes a database URL
# that Airflow itself cannot parse ("airflow-db-not-allowed:///"), so any `import airflow`
# below a task fails under any executor (apache/airflow#50601, #56356): cleared for the
# command that only asks for the version, as a DAG author has to.
CLI = """set -e
test "$(command -v airflow)" = "$VIRTUAL_ENV/bin/airflow"
python -c 'import pendulum, sys; assert sys.prefix == "'"$VIRTUAL_ENV"'", sys.prefix'
case "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in airflow-db-not-allowed*)
    unset AIRFLOW__DATABASE__SQL_ALCHEMY_CONN AIRFLOW__CORE__SQL_ALCHEMY_CONN ;;
esac
airflow version
python -c 'import airflow'
echo AFSD-CLI-OK
"""


def in_a_new_virtualenv():
    import sys

    print(f"AFSD-VENV-OK {sys.prefix}")


def in_the_airflow_interpreter():
    import airflow

    print(f"AFSD-EXTERNAL-OK {airflow.__version__}")


with DAG("afsd_task_environment", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    venv = PythonVirtualenvOperator(task_id="virtualenv", python_callable=in_a_new_virtualenv)
    external = ExternalPythonOperator(
        task_id="external_python", python=AIRFLOW_PYTHON, python_callable=in_the_airflow_interpreter
    )
    cli = BashOperator(task_id="airflow_cli", bash_command=CLI)
    write = BashOperator(task_id="write_file", bash_command=f"echo handed-over > {HANDOFF}")
    read = BashOperator(task_id="read_file", bash_command=f"grep -x handed-over {HANDOFF}; rm {HANDOFF}")
    venv >> external >> cli >> write >> read
