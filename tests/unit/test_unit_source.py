"""The units' one source (unit_files/source/*.in) and what is derived from it: the checked-in
units the .deb ships, what install-units prints for the package's paths, the environment of
debian/bin/airflow, and the comments that must match the code."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

from airflow_systemd import secrets_file
from airflow_systemd.contract import ALERT_CONFIG, CATALOG, DEFAULT_ENV_FILE, PACKAGE_VENV, SECRETS_FILE
from airflow_systemd.install import access, command, files, host, render

REPO = Path(__file__).resolve().parents[2]
UNIT_FILES = Path(render.template_path(render.TARGET_UNIT)).parent
# What debian/rules installs from unit_files: its units but airflow-webserver.service, and the catalog.
UNIT_SUFFIXES = (".service", ".target", ".timer", ".socket", ".path")
NOT_PACKAGED = {"airflow-webserver.service"}


def _settings(text: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)


def test_the_checked_in_units_are_what_the_source_renders():
    # As with systemd's .in files: after a change of the source, run
    # `python -m airflow_systemd.install.render` and commit both.
    rendered = render.package_units()
    for name, text in rendered.items():
        assert (UNIT_FILES / name).read_text() == text, f"{name} is stale: re-render it"
    # No service is a hand-kept copy: each one has a source.
    services = {p.name for p in UNIT_FILES.glob("*.service")}
    assert services == set(rendered)


def _package_dry_run(tmp_path, monkeypatch, capsys) -> dict[str, str]:
    """What `install-units --dry-run` prints for the package's paths, by file name.

    The account and the virtualenv do not exist on this host, so the checks and the venv's
    answers are stood in for; the rendering is install-units' own. Anything that would
    change the host fails the test.
    """
    account = access.Account("airflow", 999, "airflow", 999)
    monkeypatch.setattr(command, "resolve_account", lambda user, group: account)
    for check in ("check_access", "refuse_code_writable_by", "refuse_path_writable_by"):
        monkeypatch.setattr(command, check, lambda *args: None)
    package = f"{PACKAGE_VENV}/lib/python3.11/site-packages/airflow_systemd"
    info = {"executable": "/usr/bin/python3.11", "base_prefix": "/usr", "paths": [], "package": [package]}
    monkeypatch.setattr(host, "query_venv", lambda venv: info | {"airflow_major": "3"})

    def must_not_run(*args, **kwargs):
        raise AssertionError("a dry run changed the host")

    monkeypatch.setattr(files, "write", must_not_run)
    monkeypatch.setattr(host, "ensure_alert_user", must_not_run)
    monkeypatch.setattr(secrets_file, "ensure", must_not_run)
    argv = ["install-units", "--dry-run", "--venv", PACKAGE_VENV, "--user", "airflow"]
    argv += ["--airflow-home", "/var/lib/airflow", "--env-file", DEFAULT_ENV_FILE]
    argv += ["--secrets-file", SECRETS_FILE, "--alert-config", ALERT_CONFIG, "--alert-user", "airflow-alert"]
    argv += ["--unit-dir", str(tmp_path), "--catalog-dir", str(tmp_path / "catalog")]
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    assert args.func(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    blocks = re.split(r"^# ---- (\S+)\n", out, flags=re.MULTILINE)
    assert files.MARKER in blocks[0]  # the header each written file gets, said once
    return {Path(path).name: text for path, text in zip(blocks[1::2], blocks[2::2], strict=True)}


def test_the_packaged_units_are_what_install_units_dry_run_prints_for_the_packages_paths(
    tmp_path, monkeypatch, capsys
):
    printed = _package_dry_run(tmp_path, monkeypatch, capsys)
    packaged = {p.name for p in UNIT_FILES.iterdir() if p.suffix in UNIT_SUFFIXES} - NOT_PACKAGED
    packaged |= {render.ALERT_UNIT, CATALOG}
    assert packaged - NOT_PACKAGED <= set(printed)
    for name in sorted(packaged):
        assert printed[name] == (UNIT_FILES / name).read_text(), name
    assert set(printed) - packaged == NOT_PACKAGED  # Airflow 2's webserver, for pip installs only


def _wrapper(name: str) -> str:
    text = (REPO / "debian" / "bin" / "airflow").read_text()
    match = re.search(rf'^{name}=(?:"([^"]*)"|(\S*))$', text, re.MULTILINE)
    return match[1] if match[1] is not None else match[2]


def test_the_airflow_command_of_the_package_has_the_environment_every_service_sets():
    # debian/bin/airflow copies what every Airflow service of the package sets, in the units'
    # order: the same list, not a subset of it.
    services = {n: t for n, t in render.package_units().items() if _settings(t, "User") == ["airflow"]}
    assert render.SCHEDULER_UNIT in services
    every = [
        v
        for v in _settings(services[render.SCHEDULER_UNIT], "Environment")
        if all(v in _settings(t, "Environment") for t in services.values())
    ]
    assert _wrapper("UNIT_ENVIRONMENT").split() == every
    for name, text in services.items():
        files_ = [f.removeprefix("-") for f in _settings(text, "EnvironmentFile")]
        assert _wrapper("ENVIRONMENT_FILES").split() == files_, name
        assert _settings(text, "UMask") == [_wrapper("UNIT_UMASK")], name
        assert _settings(text, "User") == [_wrapper("ACCOUNT")], name
    assert _wrapper("AIRFLOW") == f"{PACKAGE_VENV}/bin/airflow"


def _comment_above(text: str, key: str) -> str:
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
    comment = []
    while lines[i - 1].startswith("#"):
        i -= 1
        comment.insert(0, lines[i])
    return " ".join(line.lstrip("# ") for line in comment)


@pytest.mark.parametrize(
    ("unit", "module"),
    [
        ("airflow-scheduler.service", "scheduler"),
        ("airflow-triggerer.service", "triggerer"),
        ("airflow-dag-processor.service", "dag_processor"),
        ("airflow-api-server.service", "api_server"),
        ("airflow-webserver.service", "webserver"),
        ("airflow-celery-worker@.service", "celery_worker"),
    ],
)
def test_each_watchdog_comment_names_the_setting_its_entrypoint_checks(unit, module):
    service = importlib.import_module(f"airflow_systemd.services.{module}").SERVICE
    comment = _comment_above(render.package_units()[unit], "WatchdogSec")
    heartbeat = getattr(service, "heartbeat", None)
    if heartbeat is None:  # the HTTP services: the health check feeds the watchdog
        assert comment.startswith("No heartbeat setting bounds this"), comment
    else:
        section, key = heartbeat
        assert f"At least 2x [{section}] {key} " in comment, comment
    mentioned = set(re.findall(r"\[\w+\] \w+_sec", comment))
    assert mentioned <= {f"[{heartbeat[0]}] {heartbeat[1]}"} if heartbeat else not mentioned


def test_only_the_scheduler_says_it_runs_dag_tasks():
    says = {n for n, t in render.package_units().items() if "LocalExecutor runs DAG task code" in t}
    assert says == {render.SCHEDULER_UNIT}
