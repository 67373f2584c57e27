"""`airflow-systemd role`: what each role enables and disables, and the commands that do it.

The systemctl side runs under a real systemd in tests/system/test_roles.py.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys

import pytest

from airflow_systemd import cli
from airflow_systemd.contract import ConfigError
from airflow_systemd.install import render, role

API, SCHEDULER, DAG_PROCESSOR, TRIGGERER = (
    "airflow-api-server.service",
    "airflow-scheduler.service",
    "airflow-dag-processor.service",
    "airflow-triggerer.service",
)
EVERY_SERVICE = {API, SCHEDULER, DAG_PROCESSOR, TRIGGERER}


def enabled(*roles: str, queues=(), instances=()) -> set[str]:
    return set(role.plan(list(roles), list(queues), "3", tuple(instances)).enable)


def test_all_in_one_and_control_run_every_service_and_only_control_listens_everywhere():
    for name in ("all-in-one", "control"):
        p = role.plan([name], [], "3")
        assert set(p.enable) == {"airflow.target", *EVERY_SERVICE}
        assert p.disable == ()
        assert p.listen_everywhere == (name == "control")


def test_the_scheduler_role_runs_the_scheduler_and_triggerer_and_disables_the_rest():
    p = role.plan(["scheduler"], [], "3")
    assert set(p.enable) == {"airflow.target", SCHEDULER, TRIGGERER}
    assert set(p.disable) == {API, DAG_PROCESSOR}
    assert not p.listen_everywhere


def test_the_worker_role_runs_one_worker_per_queue_and_no_airflow_service():
    p = role.plan(["worker"], [], "3")
    assert p.enable == ("airflow.target", "airflow-celery-worker@default.service")
    assert set(p.disable) == EVERY_SERVICE
    assert enabled("worker", queues=["a", "b", "a"]) == {
        "airflow.target",
        "airflow-celery-worker@a.service",
        "airflow-celery-worker@b.service",
    }


def test_roles_combine():
    assert enabled("worker", "scheduler") == {
        "airflow.target",
        SCHEDULER,
        TRIGGERER,
        "airflow-celery-worker@default.service",
    }


def test_worker_instances_found_on_the_host_are_disabled_unless_a_queue_names_them():
    found = ("airflow-celery-worker@default.service", "airflow-celery-worker@old.service")
    assert role.plan(["all-in-one"], [], "3", found).disable == found
    p = role.plan(["worker"], ["default"], "3", found)
    assert "airflow-celery-worker@old.service" in p.disable
    assert "airflow-celery-worker@default.service" not in p.disable


def test_the_target_is_enabled_first_so_that_a_reboot_starts_the_role():
    for roles in (["all-in-one"], ["scheduler"], ["worker"]):
        assert role.plan(roles, [], "3").enable[0] == "airflow.target"


@pytest.mark.parametrize(
    ("roles", "queues", "major", "message"),
    [
        (["bogus"], [], "3", "unknown role 'bogus': choose from all-in-one, control, scheduler, worker"),
        (["scheduler"], [], "2", "roles need Airflow 3 (this is Airflow 2"),
        (["scheduler"], ["default"], "3", "--queue is for the worker role only"),
        (["worker"], ["a b"], "3", "--queue 'a b': letters, digits"),
        (["worker"], ["x/../y"], "3", "--queue 'x/../y'"),
    ],
)
def test_what_cannot_be_done_is_refused(roles, queues, major, message):
    with pytest.raises(ConfigError) as exc:
        role.plan(roles, queues, major)
    assert str(exc.value).startswith(message)


def test_the_commands_stop_first_then_write_the_drop_in_reload_restart_and_enable(tmp_path):
    p = role.plan(["control"], [], "3", ("airflow-celery-worker@default.service",))
    change = role.drop_in_change(str(tmp_path), p.listen_everywhere)
    steps = role.commands(p, change, str(tmp_path), start=True)
    assert steps == [
        ["systemctl", "disable", "--now", "airflow-celery-worker@default.service"],
        ["write", str(tmp_path / role.DROP_IN)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "try-restart", API],
        ["systemctl", "enable", "--now", "airflow.target", SCHEDULER, DAG_PROCESSOR, TRIGGERER, API],
    ]
    role.run(steps[1])
    assert (tmp_path / role.DROP_IN).read_text() == role.DROP_IN_TEXT
    assert oct((tmp_path / role.DROP_IN).stat().st_mode & 0o777) == "0o644"
    # Done: nothing to write again; any other role removes it.
    assert role.drop_in_change(str(tmp_path), True) is None
    assert role.drop_in_change(str(tmp_path), False) == "remove"
    p = role.plan(["scheduler"], [], "3")
    steps = role.commands(p, "remove", str(tmp_path), start=False)
    assert steps == [
        ["systemctl", "disable", DAG_PROCESSOR, API],
        ["remove", str(tmp_path / role.DROP_IN)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "airflow.target", SCHEDULER, TRIGGERER],
    ]
    role.run(steps[1])
    assert not (tmp_path / role.DROP_IN).exists()
    assert role.drop_in_change(str(tmp_path), False) is None


def test_a_changed_drop_in_is_written_again(tmp_path):
    (tmp_path / role.DROP_IN).parent.mkdir()
    (tmp_path / role.DROP_IN).write_text("[Service]\n")
    assert role.drop_in_change(str(tmp_path), True) == "write"


def test_the_drop_in_makes_the_api_server_listen_everywhere(tmp_path):
    drop_in = configparser.ConfigParser(strict=False)
    drop_in.read_string(role.DROP_IN_TEXT)
    assert drop_in["Service"]["Environment"] == "AIRFLOW__API__HOST=0.0.0.0"
    assert role.DROP_IN.startswith(f"{API}.d/")


def _install_section(unit: str) -> dict[str, str]:
    section = render.template_text(unit).split("[Install]")[1]
    return dict(line.split("=", 1) for line in section.splitlines() if "=" in line and line[0] != "#")


def test_starting_the_scheduler_alone_brings_up_every_other_unit_of_an_all_in_one_host():
    """An enabled companion is wanted by the scheduler, which starts after the API server."""
    for unit in EVERY_SERVICE - {SCHEDULER}:
        assert _install_section(unit)["WantedBy"].split() == ["airflow.target", SCHEDULER], unit
    assert _install_section(SCHEDULER)["WantedBy"] == "airflow.target"
    scheduler = render.template_text(SCHEDULER).split("[Service]")[0]
    assert "After=airflow-api-server.service" in scheduler.splitlines()


def test_the_all_in_one_role_is_what_install_units_tells_to_enable():
    from airflow_systemd.install.command import SERVICES_BY_MAJOR

    assert enabled("all-in-one") == {"airflow.target", *(f"{s}.service" for s in SERVICES_BY_MAJOR["3"])}


def test_the_command_refuses_an_unknown_role_with_78_on_one_line(capsys):
    args = cli.build_parser().parse_args(["role", "bogus", "--dry-run"])
    assert args.func(args) == 78
    assert capsys.readouterr().err == (
        "airflow-systemd role: unknown role 'bogus': choose from all-in-one, control, scheduler, worker\n"
    )


def test_the_dry_run_prints_the_commands_and_changes_nothing(capsys):
    args = cli.build_parser().parse_args(["role", "scheduler", "--dry-run", "--no-start"])
    if role.airflow_major() == "2":  # the unit tier of the Airflow 2 line
        assert args.func(args) == 78
        assert capsys.readouterr().err.startswith("airflow-systemd role: roles need Airflow 3")
        return
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"systemctl disable {DAG_PROCESSOR} {API}")
    assert out[-1] == f"systemctl enable airflow.target {SCHEDULER} {TRIGGERER}"


def test_the_command_refuses_to_run_as_another_user_than_root():
    argv = [sys.executable, "-m", "airflow_systemd", "role", "scheduler"]
    if os.geteuid() == 0:  # as nobody
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=60)
    assert (result.returncode, result.stderr) == (
        78,
        "airflow-systemd role: run it as root: it writes /etc/systemd/system and calls systemctl\n",
    )


def test_the_help_explains_each_role_with_examples_and_exit_status():
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["role"].format_help()
    for name in role.ROLES:
        assert f"\n  {name} " in help_text
    assert "examples:" in help_text and "airflow-systemd role worker scheduler" in help_text
    assert "exit status:" in help_text and "78  refused" in help_text
