"""What every part of airflow-systemd agrees on: exit codes, MESSAGE_IDs, paths and defaults.

Standard library only and imports nothing of the project, so that any module (the core, the
installer, the alert, the tests) can depend on it without a cycle. Each value is defined here
and nowhere else.
"""

from __future__ import annotations

# --- Exit codes (what a unit's RestartPreventExitStatus= and an operator's script see).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78  # EX_CONFIG: the units' RestartPreventExitStatus=78 keeps systemd from looping


class ConfigError(Exception):
    """What a restart cannot fix. The message is one line that says what to fix."""


# --- MESSAGE_IDs, generated once with `systemd-id128 new`. Operators match on them: never
# change one; a new kind of event gets a new id (and an entry in airflow-systemd.catalog).
READY = "bfd683f4c38848f1bcc6eb138616678a"
STOPPING = "5bf1d4940da24e7f9ba6e14f5c0c9cc5"
CRASHED = "f0de36e5e9154c09af7a0da83165ac94"
CONFIG_ERROR = "46c9d6791d074bfab6989370c6010f7f"
DB_UNREACHABLE = "2979013039c84889b2bf1afa9981dc9e"
WATCHDOG_NEAR_MISS = "feda47c3a88449ccb91dc4d958278f1d"
RESTARTED_AFTER_FAILURE = "7b75309fcb914a75bcadc3918affb03e"
TASK_QUEUED_TOO_LONG = "376b4c3f89294c0e9f7a122e43dac0db"
TRIGGER_UNASSIGNED = "9a21bd2b45f441cdb1cb73eaa414b068"
STUCK_WORK_CLEARED = "5a6ed227dfe545b6a589fce66324ec35"
HEARTBEAT_FAILED = "2decf450baa047499778f20a52fbb1a8"
EXECUTION_API_UNREACHABLE = "33e012e15a9a4f599cf55193c2c56906"
EXECUTION_API_REACHABLE = "0bc7554dcb4d4858ae804a9d8479948d"

EVENTS = {
    READY: "ready",
    STOPPING: "stopping",
    CRASHED: "crashed",
    CONFIG_ERROR: "config error",
    DB_UNREACHABLE: "DB unreachable",
    WATCHDOG_NEAR_MISS: "watchdog near miss",
    RESTARTED_AFTER_FAILURE: "restarted after failure",
    TASK_QUEUED_TOO_LONG: "task queued too long",
    TRIGGER_UNASSIGNED: "trigger unassigned",
    STUCK_WORK_CLEARED: "stuck work cleared",
    HEARTBEAT_FAILED: "heartbeat failed",
    EXECUTION_API_UNREACHABLE: "execution API unreachable",
    EXECUTION_API_REACHABLE: "execution API reachable",
}

# --- Files shipped in unit_files/ (the package data install-units and the .deb use).
CATALOG = "airflow-systemd.catalog"
ALERT_CONFIG_TEMPLATE = "alert.conf"

# --- Where an installation keeps things (the .deb's paths; install-units' defaults).
PACKAGE_VENV = "/usr/lib/airflow-systemd/venv"  # the Debian package's virtualenv
DEFAULT_USER = "airflow"
DEFAULT_GROUP = "airflow"
DEFAULT_HOME = "/var/lib/airflow"
DEFAULT_ENV_FILE = "/etc/default/airflow"
SECRETS_FILE = "/etc/airflow-systemd/secrets.env"  # root:airflow 0640, see secrets_file.py
OLD_SECRETS_FILE = "/var/lib/airflow/secrets.env"  # where versions before 0.2 kept the keys
ALERT_CONFIG = "/etc/airflow-systemd/alert.conf"  # root:airflow-alert 0640
ALERT_USER = "airflow-alert"  # airflow-alert@.service's User=
ALERT_STATE_DIR = "/var/lib/airflow-systemd-alert"  # the alert unit's StateDirectory=
ALERT_RUNS_DIR = "runs"  # under ALERT_STATE_DIR: the one part the services may read

# --- Stuck work (services/stuck_work.py): the scheduler's threshold, from /etc/default/airflow.
STUCK_AFTER_VARIABLE = "AIRFLOW_SYSTEMD_STUCK_AFTER"
DEFAULT_STUCK_AFTER = "5min"
