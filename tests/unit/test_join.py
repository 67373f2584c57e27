"""join: export-settings on the control host, import-settings on the joining one.

As root (both commands refuse anyone else), with real files in the test's own directories
standing for /etc/airflow-systemd/secrets.env and /etc/default/airflow of two hosts.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from airflow_systemd import cli, join, secrets_file
from airflow_systemd.contract import EXIT_CONFIG

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the files belong to root: needs root")
GROUP = grp.getgrgid(pwd.getpwnam("daemon").pw_gid).gr_name

CONTROL_ENV = """\
# the control host's settings
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:s3cret@localhost:5432/airflow
AIRFLOW__CORE__EXECUTOR=CeleryExecutor
AIRFLOW__CELERY__BROKER_URL="redis://:pw@127.0.0.1:6379/0"
AIRFLOW__API__HOST=0.0.0.0
AIRFLOW__API__PORT=8081
AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8795
"""
JOINING_ENV = """\
#AIRFLOW__CORE__EXECUTOR=LocalExecutor
AIRFLOW__CORE__EXECUTOR=LocalExecutor
AIRFLOW__CORE__PARALLELISM=8
AIRFLOW__CORE__FERNET_KEY=b2xkLWZlcm5ldC1rZXktb2YtdGhpcy1ob3N0ISEhISE=
"""


class Host:
    """One host's two files, in a directory of its own."""

    def __init__(self, root: Path, env: str) -> None:
        (root / "etc" / "default").mkdir(parents=True)
        self.secrets = root / "etc" / "airflow-systemd" / "secrets.env"
        self.env = root / "etc" / "default" / "airflow"
        secrets_file.ensure(str(self.secrets), GROUP, take_over=None)
        self.env.write_text(env)
        os.chown(self.env, 0, grp.getgrnam(GROUP).gr_gid)
        self.env.chmod(0o640)

    def options(self) -> list[str]:
        return ["--secrets-file", str(self.secrets), "--env-file", str(self.env)]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    return exit_.value.code, capsys.readouterr().err


def _values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and line[0] != "#")


def _owner_mode(path: Path) -> tuple[int, str, int]:
    info = path.stat()
    return info.st_uid, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)


@pytest.fixture
def control(tmp_path):
    return Host(tmp_path / "a", CONTROL_ENV)


@pytest.fixture
def joining(tmp_path):
    return Host(tmp_path / "b", JOINING_ENV)


@pytest.fixture
def exported(control, tmp_path, capsys) -> Path:
    path = tmp_path / "settings.env"
    code, err = _run(["export-settings", "--host", "a.example", str(path), *control.options()], capsys)
    assert code == 0, err
    return path


def test_export_writes_the_keys_and_urls_pointed_at_the_control_host_root_s_0600(exported, control):
    assert _owner_mode(exported)[::2] == (0, 0o600)
    keys = _values(control.secrets)
    assert _values(exported) == {
        "AIRFLOW__CORE__FERNET_KEY": keys["AIRFLOW__CORE__FERNET_KEY"],
        "AIRFLOW__API__SECRET_KEY": keys["AIRFLOW__API__SECRET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["AIRFLOW__API_AUTH__JWT_SECRET"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:s3cret@a.example:5432/airflow",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": "redis://:pw@a.example:6379/0",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://a.example:8081/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "8795",
    }  # not AIRFLOW__API__HOST, which is the control host's own


def test_import_puts_the_keys_in_secrets_env_and_replaces_the_settings_in_place(
    exported, control, joining, capsys
):
    own_webserver_key = _values(joining.secrets)["AIRFLOW__WEBSERVER__SECRET_KEY"]
    code, err = _run(["import-settings", str(exported), *joining.options(), "--group", GROUP], capsys)
    assert code == 0, err
    assert "removed from" in err and "AIRFLOW__CORE__FERNET_KEY" in err
    secrets = _values(joining.secrets)
    for key in join.KEYS:
        assert secrets[key] == _values(control.secrets)[key]
    assert secrets["AIRFLOW__WEBSERVER__SECRET_KEY"] == own_webserver_key  # not carried: kept
    lines = joining.env.read_text().splitlines()
    assert lines[:3] == [  # the comment kept, the executor replaced where it stood
        "#AIRFLOW__CORE__EXECUTOR=LocalExecutor",
        "AIRFLOW__CORE__EXECUTOR=CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM=8",
    ]
    env = _values(joining.env)
    assert "AIRFLOW__CORE__FERNET_KEY" not in env  # it would shadow the imported key
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://a.example:8081/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@a.example:5432/airflow")
    assert _owner_mode(joining.secrets) == _owner_mode(joining.env) == (0, GROUP, 0o640)
    assert sorted(p.name for p in joining.env.parent.iterdir()) == ["airflow"]  # no temporary left

    # Importing again changes nothing: the values are replaced, not added.
    before = joining.env.read_text(), joining.secrets.read_text()
    assert _run(["import-settings", str(exported), *joining.options(), "--group", GROUP], capsys)[0] == 0
    assert (joining.env.read_text(), joining.secrets.read_text()) == before


def _refused(path: Path, joining: Host, capsys) -> str:
    before = joining.env.read_text(), joining.secrets.read_text()
    code, err = _run(["import-settings", str(path), *joining.options(), "--group", GROUP], capsys)
    assert code == EXIT_CONFIG
    assert len(err.strip().splitlines()) == 1, err
    assert (joining.env.read_text(), joining.secrets.read_text()) == before
    return err


def test_a_file_readable_by_others_is_refused(exported, joining, capsys):
    exported.chmod(0o644)
    assert "no access for group or others" in _refused(exported, joining, capsys)


def test_a_file_of_another_account_is_refused(exported, joining, capsys):
    os.chown(exported, pwd.getpwnam("nobody").pw_uid, -1)
    assert "must belong to root" in _refused(exported, joining, capsys)


def test_a_name_it_does_not_carry_is_refused_with_its_line(exported, joining, capsys):
    with exported.open("a") as f:
        f.write("PYTHONPATH=/var/lib/airflow/dags\n")
    number = len(exported.read_text().splitlines())
    err = _refused(exported, joining, capsys)
    assert f"line {number}: PYTHONPATH is not one of the settings" in err


@pytest.mark.parametrize(
    "line, why",
    [
        ("this is no assignment", "not NAME=value"),
        ("AIRFLOW__CORE__FERNET_KEY=$(id)", "AIRFLOW__CORE__FERNET_KEY: not a plain token"),
        ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://a b/", "EXECUTION_API_SERVER_URL: not one word"),
        ("AIRFLOW__CORE__DAGS_FOLDER=dags", "AIRFLOW__CORE__DAGS_FOLDER: not an absolute path"),
    ],
)
def test_a_malformed_line_is_refused_naming_its_number(line, why, joining, tmp_path, capsys):
    path = tmp_path / "hand-made.env"
    path.write_text(f"# comment\n\n{line}\n")
    path.chmod(0o600)
    err = _refused(path, joining, capsys)
    assert "hand-made.env line 3: " in err and why in err


def test_export_never_overwrites(exported, control, capsys):
    before = exported.read_text()
    code, err = _run(["export-settings", "--host", "a.example", str(exported), *control.options()], capsys)
    assert code == EXIT_CONFIG and "never overwrites" in err
    assert exported.read_text() == before


def test_export_needs_a_database_server_and_the_keys(control, tmp_path, capsys):
    control.env.write_text("AIRFLOW__CORE__EXECUTOR=LocalExecutor\n")
    code, err = _run(["export-settings", "--host", "a", str(tmp_path / "x"), *control.options()], capsys)
    assert code == EXIT_CONFIG and "switch this host to PostgreSQL" in err
    control.env.write_text(CONTROL_ENV)
    control.secrets.unlink()
    code, err = _run(["export-settings", "--host", "a", str(tmp_path / "x"), *control.options()], capsys)
    assert code == EXIT_CONFIG and "generate-secrets" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql+psycopg2://u:p@localhost/airflow", "postgresql+psycopg2://u:p@a.example/airflow"),
        (
            "db+postgresql://u:p@[::1]:5433/airflow?sslmode=require",
            "db+postgresql://u:p@a.example:5433/airflow?sslmode=require",
        ),
        ("redis://127.0.0.1:6379/0", "redis://a.example:6379/0"),
        ("redis://:p@ss@localhost", "redis://:p@ss@a.example"),
        ("postgresql://u:p@db.example/airflow", "postgresql://u:p@db.example/airflow"),  # already remote
    ],
)
def test_local_hosts_in_urls_become_the_control_host(url, expected):
    assert join.pointed_at(url, "a.example") == expected


def test_a_url_over_a_unix_socket_cannot_travel():
    with pytest.raises(join.SettingsProblem, match="names no host"):
        join.pointed_at("postgresql+psycopg2://airflow:secret@/airflow", "a.example")


@pytest.mark.parametrize(
    "command, says",
    [
        (
            "export-settings",
            ["AIRFLOW__API_AUTH__JWT_SECRET", "export-settings --host a.example", "0600", "78"],
        ),
        (
            "import-settings",
            ["PYTHONPATH=", "import-settings /root/airflow-settings.env", "role worker", "78"],
        ),
    ],
)
def test_help_says_what_travels_with_examples_and_exit_status(command, says, capsys):
    code, out = _run_help(command, capsys)
    assert code == 0
    for text in says:
        assert text in out


def _run_help(command: str, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    return exit_.value.code, capsys.readouterr().out


@pytest.mark.parametrize("command", ["export-settings", "import-settings"])
def test_an_unknown_argument_is_refused_with_78(command, tmp_path, capsys):
    code, err = _run([command, "--host", "a", str(tmp_path / "x"), "--nope"], capsys)
    assert code == EXIT_CONFIG and "--nope" in err
    assert not (tmp_path / "x").exists()
