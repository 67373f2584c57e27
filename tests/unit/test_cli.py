"""The one calling convention of `airflow-systemd`: handler(args) -> exit status, for every command."""

import argparse
import inspect

import pytest

from airflow_systemd import cli, lifecycle

AIRFLOW_COMMANDS = [*cli.COMPONENTS, "db-migrate"]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_handler_takes_the_namespace_alone():
    for name, sub in subcommands(cli.build_parser()).items():
        handler = sub.get_default("func")
        assert handler is not None, name
        assert len(inspect.signature(handler).parameters) == 1, name


def test_only_the_commands_that_run_airflow_declare_airflow_args():
    declared = {
        name for name, sub in subcommands(cli.build_parser()).items() if sub.get_default("airflow_args") == []
    }
    assert declared == set(AIRFLOW_COMMANDS)


@pytest.fixture
def ran(monkeypatch):
    """lifecycle.run, recorded instead of run: what each command hands it."""
    calls = []

    def run(component, main, *, stop_timeout):
        calls.append((component, main, stop_timeout))
        return 0

    monkeypatch.setattr(lifecycle, "run", run)
    return calls


@pytest.mark.parametrize("command", AIRFLOW_COMMANDS)
def test_airflow_arguments_reach_the_service_through_the_namespace(command, ran, monkeypatch):
    seen = []
    if command == "db-migrate":
        from airflow_systemd.services import oneshot

        monkeypatch.setattr(oneshot, "db_migrate", lambda life, airflow_args: seen.append(airflow_args))
    else:
        from airflow_systemd.services import celery_worker, http, job

        for module in (http, job, celery_worker):
            monkeypatch.setattr(module, "run", lambda life, service, airflow_args: seen.append(airflow_args))
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--some-airflow-option", "value"])
    assert exit_.value.code == 0
    [(component, main, _)] = ran
    assert component == command  # the component name itself, not a command line to parse back
    main(None)
    assert seen == [["--some-airflow-option", "value"]]


@pytest.mark.parametrize(("command", "default"), [("scheduler", 20.0), ("celery-worker", 3600.0)])
def test_a_celery_worker_drains_for_an_hour_by_default_the_others_20_s(command, default, ran):
    with pytest.raises(SystemExit):
        cli.main([command])
    [(_, _, stop_timeout)] = ran
    assert stop_timeout == default


@pytest.mark.parametrize("command", ["db-clean", "log-clean"])
def test_housekeeping_commands_run_under_the_lifecycle(command, ran, monkeypatch):
    from airflow_systemd.services import oneshot

    seen = []
    monkeypatch.setattr(oneshot, command.replace("-", "_"), lambda life, days: seen.append(days))
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--retention-days", "7"])
    assert exit_.value.code == 0
    [(component, main, stop_timeout)] = ran
    assert (component, stop_timeout) == (command, 20.0)
    main(None)
    assert seen == [7]


@pytest.mark.parametrize(
    "argv",
    [
        ["db-clean", "--bogus"],
        ["log-clean", "stray"],
        ["generate-secrets", "--nope"],
        ["alert", "airflow-scheduler.service", "--nope"],
    ],
)
def test_commands_that_run_no_airflow_command_refuse_unknown_arguments_with_78(argv, ran, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == lifecycle.EXIT_CONFIG
    assert "unrecognized arguments" in capsys.readouterr().err
    assert ran == []
