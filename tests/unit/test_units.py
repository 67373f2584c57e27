"""install-units / uninstall-units, and the shipped unit files themselves.

The access checks switch to another user, so the tests that exercise them need root; the
systemd-analyze tests need only the binary (no running systemd).
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from airflow_systemd.contract import PACKAGE_VENV
from airflow_systemd.install import command, files, render
from airflow_systemd.install.sandbox import Sandbox, plan_sandbox

UNIT_FILES = Path(render.template_path(render.TARGET_UNIT)).parent
SHIPPED_UNIT = UNIT_FILES / render.SCHEDULER_UNIT
REPO_UNITS = Path(__file__).resolve().parents[2] / "units"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="checks access as another user: needs root")


def _analyze(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120)


def _exposure(path: Path) -> float:
    result = _analyze("security", "--offline=true", str(path))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure level in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def _keys(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("#", "["))]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="airflow-systemd")
    command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def _run(argv: list[str]) -> int:
    args = _parse(argv)
    return args.func(args)


@pytest.fixture
def open_dir():
    """A directory any user may enter (pytest's own tree is 0700); when root, outside the
    service's private /tmp and outside /var/lib, where AIRFLOW_HOME would be a StateDirectory=."""
    parent = "/var/cache" if os.geteuid() == 0 else None
    path = Path(tempfile.mkdtemp(prefix="airflow-systemd-units-", dir=parent))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _fake_venv(root: Path, executable: str = "/bin/true") -> Path:
    """Only as much of a virtualenv as the unit points at: bin/airflow-systemd."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "airflow-systemd").symlink_to(executable)
    return root


# --- the shipped files ---------------------------------------------------------------------


def test_repo_units_is_the_package_data():
    assert REPO_UNITS.is_symlink()
    assert REPO_UNITS.resolve() == UNIT_FILES.resolve()


def test_shipped_unit_has_the_lifecycle_settings():
    keys = _keys(SHIPPED_UNIT.read_text())
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "KillMode=control-group",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "TimeoutStopSec=30s",
        "LimitCORE=0",
        f"ExecStart={PACKAGE_VENV}/bin/airflow-systemd scheduler",
        "User=airflow",
        "Environment=AIRFLOW_HOME=/var/lib/airflow",
        "EnvironmentFile=-/etc/default/airflow",
        "PartOf=airflow.target",
    ):
        assert line in keys
    assert keys.index("Description=Apache Airflow scheduler") < keys.index(
        "Documentation=https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/scheduler.html"
    )


def test_shipped_unit_verifies_but_for_the_missing_binary():
    result = _analyze("verify", str(SHIPPED_UNIT))
    problems = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and f"{PACKAGE_VENV}/bin/airflow-systemd is not executable" not in line
    ]
    assert problems == []


def test_every_shipped_service_verifies_and_exposure_is_at_most_1_5(tmp_path):
    names = render.shipped_units()
    assert {
        "airflow-api-server.service",
        "airflow-dag-processor.service",
        "airflow-triggerer.service",
        "airflow-webserver.service",
        "airflow-db-migrate.service",
        "airflow-db-clean.timer",
    } <= set(names)
    for name in names:
        (tmp_path / name).write_text(_runnable_here((UNIT_FILES / name).read_text()))
    (tmp_path / render.TARGET_UNIT).write_text((UNIT_FILES / render.TARGET_UNIT).read_text())
    result = _analyze("verify", *(str(tmp_path / n) for n in names))
    assert (result.returncode, result.stderr.strip()) == (0, "")
    for name in names:
        if name.endswith(".service"):
            assert _exposure(UNIT_FILES / name) <= 1.5, name


def test_shipped_unit_exposure_is_at_most_1_5():
    assert _exposure(SHIPPED_UNIT) <= 1.5


def _runnable_here(text: str) -> str:
    """A shipped unit that `verify` can check on this host: no airflow user, no binary."""
    return (
        text.replace(f"{PACKAGE_VENV}/bin/airflow-systemd", "/bin/true")
        .replace("User=airflow", "User=root")
        .replace("Group=airflow", "Group=root")
    )


def test_relaxed_drop_in_verifies(tmp_path):
    for name in render.shipped_units():  # the scheduler Requires= the db-migrate unit
        (tmp_path / name).write_text(_runnable_here((UNIT_FILES / name).read_text()))
    unit = tmp_path / render.SCHEDULER_UNIT
    (tmp_path / render.TARGET_UNIT).write_text((UNIT_FILES / render.TARGET_UNIT).read_text())
    dropins = tmp_path / f"{render.SCHEDULER_UNIT}.d"
    dropins.mkdir()
    shutil.copy(UNIT_FILES / command.RELAXED_DROP_IN, dropins)
    result = _analyze("verify", str(unit))
    assert (result.returncode, result.stderr.strip()) == (0, "")
    # The drop-in really was read: sudo's block undoes most of the sandbox.
    assert _exposure(unit) > 5


def test_env_file_template_sets_nothing():
    keys = _keys((UNIT_FILES / command.ENV_FILE_TEMPLATE).read_text())
    assert keys == []


# --- rendering -----------------------------------------------------------------------------


def _render(home="/var/lib/airflow", venv="/opt/venvs/airflow", code=None, **kw) -> str:
    sandbox = plan_sandbox(home, code if code is not None else [venv])
    options = {"user": "etl", "group": "etl", "env_file": "/etc/airflow/env"} | kw
    return render.render_scheduler(airflow_home=home, venv=venv, sandbox=sandbox, **options)


def test_render_custom_user_home_and_venv():
    text = _render(home="/srv/airflow", venv="/opt/venvs/af")
    keys = _keys(text)
    assert files.stamped(render.SCHEDULER_UNIT, text).splitlines()[0] == files.MARKER
    assert "ExecStart=/opt/venvs/af/bin/airflow-systemd scheduler" in keys
    assert "User=etl" in keys and "Group=etl" in keys
    assert "Environment=AIRFLOW_HOME=/srv/airflow" in keys
    # the tasks' environment is the activated virtualenv's (issue 17)
    assert "Environment=VIRTUAL_ENV=/opt/venvs/af" in keys
    assert (
        "Environment=PATH=/opt/venvs/af/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        in keys
    )
    assert "EnvironmentFile=-/etc/airflow/env" in keys
    # Outside /var/lib: no StateDirectory=, but writable despite ProtectSystem=strict.
    assert not [k for k in keys if k.startswith("StateDirectory")]
    assert "ReadWritePaths=/srv/airflow" in keys
    assert "ProtectHome=yes" in keys
    # Everything else is the shipped unit's.
    shipped = set(_keys(SHIPPED_UNIT.read_text()))
    assert shipped - set(keys) == {
        f"ExecStart={PACKAGE_VENV}/bin/airflow-systemd scheduler",
        "User=airflow",
        "Group=airflow",
        "Environment=AIRFLOW_HOME=/var/lib/airflow",
        "Environment=VIRTUAL_ENV=/usr/lib/airflow-systemd/venv",
        "Environment=PATH=/usr/lib/airflow-systemd/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "EnvironmentFile=-/etc/default/airflow",
        "StateDirectory=airflow",
        "StateDirectoryMode=0750",
    }


def test_render_home_under_var_lib_stays_a_state_directory():
    keys = _keys(_render(home="/var/lib/airflow-prod"))
    assert "StateDirectory=airflow-prod" in keys
    assert not [k for k in keys if k.startswith("ReadWritePaths=")]


def test_render_venv_under_root_is_mounted_into_a_tmpfs_home():
    keys = _keys(_render(venv="/root/venvs/af", code=["/root/venvs/af", "/root/venvs/af/lib", "/usr"]))
    assert "ProtectHome=tmpfs" in keys
    assert "TemporaryFileSystem=/home:ro /root:ro /run/user:ro" in keys
    assert "BindReadOnlyPaths=/root/venvs/af" in keys
    assert not [k for k in keys if k.startswith("BindPaths=")]
    assert "StateDirectory=airflow" in keys


def test_render_home_under_home_is_mounted_read_write():
    keys = _keys(
        _render(
            home="/home/alice/airflow",
            venv="/home/alice/venv",
            code=["/home/alice/venv", "/home/alice/src/airflow-systemd/airflow_systemd"],
        )
    )
    assert "ProtectHome=tmpfs" in keys
    assert "BindReadOnlyPaths=/home/alice/src/airflow-systemd/airflow_systemd /home/alice/venv" in keys
    assert "BindPaths=/home/alice/airflow" in keys
    assert not [k for k in keys if k.startswith(("StateDirectory", "ReadWritePaths"))]


def test_render_code_under_tmp_is_mounted_back_into_the_private_tmp():
    sandbox = plan_sandbox("/var/lib/airflow", ["/tmp/clone/.venvs/a", "/tmp/clone/src", "/usr"])
    text = render.render_scheduler(
        user="airflow",
        group="airflow",
        airflow_home="/var/lib/airflow",
        venv="/tmp/clone/.venvs/a",
        env_file="/etc/default/airflow",
        sandbox=sandbox,
    )
    assert "PrivateTmp=yes" in text.splitlines()
    assert "BindReadOnlyPaths=/tmp/clone/.venvs/a /tmp/clone/src" in text.splitlines()


def test_render_escapes_specifiers():
    keys = _keys(_render(venv="/opt/100%/venv"))
    assert "ExecStart=/opt/100%%/venv/bin/airflow-systemd scheduler" in keys


def test_rendered_units_verify(tmp_path):
    venv = _fake_venv(tmp_path / "venv")
    for home, sandbox in [
        ("/var/lib/airflow", plan_sandbox("/var/lib/airflow", [str(venv)])),
        ("/srv/airflow", plan_sandbox("/srv/airflow", [str(venv)])),
        # What a venv under /root renders to, with directories that exist here.
        ("/var/lib/airflow", Sandbox("airflow", (), "tmpfs", ("/usr/lib",), ("/var/tmp",))),
    ]:
        (tmp_path / render.TARGET_UNIT).write_text(render.render_target())
        # verify needs a user that exists and warns about nobody ("not safe"); security
        # marks root and nobody down but does not look the user up.
        for user, group in [("root", "root"), ("airflow", "airflow")]:
            rendered = []
            for name in render.shipped_units():
                rendered.append(tmp_path / name)
                rendered[-1].write_text(
                    render.render_service(
                        name,
                        user=user,
                        group=group,
                        airflow_home=home,
                        venv=str(venv),
                        env_file="/etc/default/airflow",
                        sandbox=sandbox,
                    )
                )
            if user == "root":
                result = _analyze("verify", *map(str, rendered), str(tmp_path / render.TARGET_UNIT))
                assert (result.returncode, result.stderr.strip()) == (0, ""), result.stderr
            else:
                for unit in rendered:
                    if unit.suffix == ".service":
                        assert _exposure(unit) <= 1.5, unit.read_text()


def test_render_fails_loudly_on_a_source_without_a_value_or_an_include():
    with pytest.raises(RuntimeError, match="@USER@"):
        render.substitute("User=@USER@\n", {"GROUP": "etl"}, "x.in")
    with pytest.raises(RuntimeError, match=r"no no-such\.in"):
        render.inline("no-such.in", ("airflow-scheduler.service.in",))
    # Every placeholder of every source has a value: nothing like @NAME@ is left.
    for name, text in render.package_units().items():
        assert not re.search(r"@[A-Z_]+@", text), name


# --- install-units -------------------------------------------------------------------------


def _install_argv(unit_dir: Path, *extra: str) -> list[str]:
    return [
        "install-units",
        "--unit-dir",
        str(unit_dir),
        "--env-file",
        str(unit_dir / "airflow.env"),
        "--alert-config",
        str(unit_dir / "alert.conf"),
        "--catalog-dir",
        str(unit_dir / "catalog"),
        "--secrets-file",
        str(unit_dir / "secrets.env"),
        "--alert-user",
        "daemon",
        "--no-reload",
        *extra,
    ]


@needs_root
def test_install_writes_units_for_this_venv(tmp_path, capsys):
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--airflow-home", "/var/lib/airflow-units-test"))
    assert rc == 0, capsys.readouterr().err
    text = (tmp_path / render.SCHEDULER_UNIT).read_text()
    keys = _keys(text)
    assert text.splitlines()[0] == files.MARKER
    assert f"ExecStart={sys.prefix}/bin/airflow-systemd scheduler" in keys
    assert "User=nobody" in keys
    assert f"Group={grp.getgrgid(pwd.getpwnam('nobody').pw_gid).gr_name}" in keys
    assert "StateDirectory=airflow-units-test" in keys
    assert f"EnvironmentFile=-{tmp_path}/airflow.env" in keys
    assert files.MARKER in (tmp_path / render.TARGET_UNIT).read_text()
    env = tmp_path / "airflow.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_text() == (UNIT_FILES / command.ENV_FILE_TEMPLATE).read_text()


def test_install_dry_run_prints_and_writes_nothing(tmp_path, capsys):
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--dry-run"))
    out = capsys.readouterr().out
    assert rc == 0
    assert f"ExecStart={sys.prefix}/bin/airflow-systemd scheduler" in out
    assert files.MARKER in out
    assert list(tmp_path.iterdir()) == []


def test_install_refuses_a_user_that_does_not_exist(tmp_path, capsys):
    rc = _run(_install_argv(tmp_path, "--user", "no-such-user-af"))
    err = capsys.readouterr().err
    assert rc == 78
    assert len(err.strip().splitlines()) == 1
    assert "user 'no-such-user-af' does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_install_refuses_a_group_that_does_not_exist(tmp_path, capsys):
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--group", "no-such-group-af"))
    assert rc == 78
    assert "group 'no-such-group-af' does not exist" in capsys.readouterr().err


@needs_root
def test_install_refuses_a_venv_the_user_cannot_enter(open_dir, tmp_path, capsys):
    locked = open_dir / "locked"
    locked.mkdir(mode=0o700)
    venv = _fake_venv(locked / "venv")
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--venv", str(venv)))
    err = capsys.readouterr().err
    assert rc == 78
    assert len(err.strip().splitlines()) == 1
    assert f"user nobody cannot enter {locked} " in err
    assert list(tmp_path.iterdir()) == []


@needs_root
def test_install_refuses_an_executable_the_user_cannot_run(open_dir, tmp_path, capsys):
    venv = open_dir / "venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "airflow-systemd"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--venv", str(venv)))
    assert rc == 78
    assert f"cannot read and execute {script}" in capsys.readouterr().err


@needs_root
def test_install_refuses_a_home_the_user_cannot_write(open_dir, tmp_path, capsys):
    home = open_dir / "home"
    home.mkdir(mode=0o755)
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--airflow-home", str(home)))
    assert rc == 78
    assert f"cannot read, write and enter {home}" in capsys.readouterr().err


def test_install_refuses_a_home_in_private_tmp(tmp_path, capsys):
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--airflow-home", "/tmp/airflow"))
    assert rc == 78
    assert "PrivateTmp=yes" in capsys.readouterr().err


def test_install_refuses_a_venv_without_the_entrypoint(open_dir, tmp_path, capsys):
    (open_dir / "bin").mkdir()
    rc = _run(_install_argv(tmp_path, "--user", "nobody", "--venv", str(open_dir)))
    assert rc == 78
    assert f"does not exist: {open_dir}/bin/airflow-systemd" in capsys.readouterr().err


@needs_root
def test_install_keeps_foreign_units_unless_forced(tmp_path, capsys):
    foreign = tmp_path / render.SCHEDULER_UNIT
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    assert _run(_install_argv(tmp_path, "--user", "nobody")) == 78
    assert "--force" in capsys.readouterr().err
    assert foreign.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert _run(_install_argv(tmp_path, "--user", "nobody", "--force")) == 0
    assert files.MARKER in foreign.read_text()


def test_install_refuses_a_venv_without_airflow_systemd(open_dir, tmp_path, capsys):
    venv = _fake_venv(open_dir / "venv")
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    rc = _run(_install_argv(tmp_path, "--user", pwd.getpwuid(os.geteuid()).pw_name, "--venv", str(venv)))
    assert rc == 78
    assert f"airflow-systemd is not installed in the virtualenv {venv}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- uninstall-units -----------------------------------------------------------------------


def test_uninstall_removes_only_marked_files(tmp_path, capsys):
    ours = tmp_path / render.SCHEDULER_UNIT
    ours.write_text(files.MARKER + "\n[Service]\n")
    target = tmp_path / render.TARGET_UNIT
    target.write_text(files.MARKER + "\n[Unit]\n")
    hand_written = tmp_path / "airflow-webserver.service"
    hand_written.write_text("# Installed by hand\n[Service]\n")
    mentions = tmp_path / "airflow-triggerer.service"
    mentions.write_text(f"# not {files.MARKER}\n")
    other = tmp_path / "postgresql.service"
    other.write_text(files.MARKER + "\n")
    dropins = tmp_path / f"{render.SCHEDULER_UNIT}.d"
    dropins.mkdir()

    assert (
        _run(["uninstall-units", "--unit-dir", str(tmp_path), "--catalog-dir", str(tmp_path), "--no-reload"])
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [hand_written.name, mentions.name, other.name, dropins.name]
    )
    assert (
        _run(["uninstall-units", "--unit-dir", str(tmp_path), "--catalog-dir", str(tmp_path), "--no-reload"])
        == 0
    )
    assert "nothing to remove" in capsys.readouterr().err


def test_uninstall_dry_run_lists_and_keeps(tmp_path, capsys):
    ours = tmp_path / render.SCHEDULER_UNIT
    ours.write_text(files.MARKER + "\n")
    assert (
        _run(["uninstall-units", "--unit-dir", str(tmp_path), "--catalog-dir", str(tmp_path), "--dry-run"])
        == 0
    )
    assert capsys.readouterr().out.split() == [str(ours)]
    assert ours.exists()


def test_register_defaults():
    args = _parse(["install-units"])
    assert (args.user, args.group, args.airflow_home, args.venv, args.unit_dir, args.env_file) == (
        "airflow",
        None,
        "/var/lib/airflow",
        sys.prefix,
        "/etc/systemd/system",
        "/etc/default/airflow",
    )
    assert args.func is command.install_units
    assert _parse(["uninstall-units"]).func is command.uninstall_units


def test_the_alert_unit_runs_as_its_own_account_isolated_and_exposure_is_at_most_1_5(tmp_path):
    text = (UNIT_FILES / render.ALERT_UNIT).read_text()
    keys = _keys(text)
    assert tuple(k for k in keys if k.startswith(("User=", "Group=", "SupplementaryGroups="))) == (
        "User=airflow-alert",
        "Group=airflow-alert",
        "SupplementaryGroups=systemd-journal",
    )
    # No environment from a file, and Python that no PYTHON* variable or directory steers.
    assert not [k for k in keys if k.startswith(("EnvironmentFile=", "Environment=", "WorkingDirectory="))]
    assert "ExecStart=/usr/lib/airflow-systemd/venv/bin/python3 -I -m airflow_systemd alert %i" in keys
    assert _exposure(UNIT_FILES / render.ALERT_UNIT) <= 1.5
    instance = tmp_path / "airflow-alert@airflow-scheduler.service"
    instance.write_text(
        text.replace("/usr/lib/airflow-systemd/venv/bin/python3", "/bin/true")
        .replace("User=airflow-alert", "User=root")
        .replace("Group=airflow-alert", "Group=root")
    )
    result = _analyze("verify", str(instance))
    assert (result.returncode, result.stderr.strip()) == (0, "")


def test_every_privileged_line_of_a_shipped_unit_only_asks_systemd_to_start_the_alert():
    # "+" and "!" run a command as root; the airflow user (DAG code) writes neither the
    # command nor, with the files below out of its reach, its environment (tests/system
    # checks those files' owners on an installed system).
    for name in render.shipped_units():
        for line in _keys((UNIT_FILES / name).read_text()):
            key, _, value = line.partition("=")
            prefix = re.match(r"[-@:+!|]*", value).group()
            if key.startswith("Exec") and ("+" in prefix or "!" in prefix):
                assert value in (
                    "-+systemctl start "
                    "airflow-alert@%N:${SERVICE_RESULT}:${EXIT_CODE}:${EXIT_STATUS}:${INVOCATION_ID}.service",
                    # once READY: the instance name is fixed, nothing from the run in it
                    "-+systemctl start --no-block airflow-alert@%N:started.service",
                ), (name, line)
        files = re.findall(r"^EnvironmentFile=-?(\S+)", (UNIT_FILES / name).read_text(), re.MULTILINE)
        if name.endswith(".service"):
            assert files == ["/etc/airflow-systemd/secrets.env", "/etc/default/airflow"], name


@needs_root
@pytest.mark.parametrize("option", ["--env-file", "--secrets-file", "--alert-config"])
def test_install_refuses_a_file_the_root_line_reads_that_the_service_user_can_change(
    open_dir, tmp_path, capsys, option
):
    # The units' "+" line gets the environment files, the alert's account reads alert.conf:
    # a line the service user (DAG code) could add there would choose code for them.
    nobody = pwd.getpwnam("nobody")
    theirs = open_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    argv = _install_argv(tmp_path, "--user", "nobody", "--airflow-home", "/var/lib/airflow-units-test")
    argv[argv.index(option) + 1] = str(theirs / "file")
    assert _run(argv) == 78
    err = capsys.readouterr().err
    assert f"{option} {theirs}/file: user nobody can write to {theirs}" in err
    assert not (tmp_path / render.SCHEDULER_UNIT).exists()  # nothing written
    # a file of root's in a directory of root's, but writable by the user itself
    (theirs / "file").touch()
    os.chown(theirs, 0, 0)
    os.chown(theirs / "file", nobody.pw_uid, 0)
    assert _run(argv) == 78
    assert f"user nobody can write to {theirs}/file" in capsys.readouterr().err
