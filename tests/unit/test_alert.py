"""The alert (airflow_systemd/alert/): configuration, the rate limit, what an alert says, and real delivery.

systemd's answers (unit properties, journal entries) are substituted; channels are real: a
local HTTP server, a command, a stand-in sendmail. Also the alert's part of install-units.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from airflow_systemd import journal
from airflow_systemd.alert.channels import deliver
from airflow_systemd.alert.command import alert, parse_instance, unit_name
from airflow_systemd.alert.config import (
    Command,
    ConfigProblem,
    Email,
    Settings,
    Webhook,
    load_config,
    parse_duration,
)
from airflow_systemd.alert.history import admit
from airflow_systemd.alert.payload import build_payload
from airflow_systemd.alert.systemd import Systemd, will_restart
from airflow_systemd.install import access, command, files, render
from airflow_systemd.install.sandbox import plan_sandbox
from airflow_systemd.last_run import Stop, previous_stop
from tests.harness.receiver import Receiver

UNIT = "airflow-scheduler.service"
SHIPPED = {"Restart": "on-failure", "RestartPreventExitStatus": "78", "RestartForceExitStatus": ""}
# The per-unit rate limit alone: incidents (test_incident.py) off.
PerUnit = functools.partial(Settings, incident_window=0)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="checks access as another user: needs root")


class FakeSystemd(Systemd):
    def __init__(self, props=None, entries=()):
        self.props = SHIPPED if props is None else props
        self.entries = list(entries)

    def show(self, unit, *props):
        return dict(self.props)

    def journal(self, unit):
        return list(self.entries)


def entry(message, priority=3, invocation="inv1", **fields):
    return {"MESSAGE": message, "PRIORITY": str(priority), "_SYSTEMD_INVOCATION_ID": invocation, **fields}


def after_run(result="exit-code", code="exited", status="1", invocation="inv1"):
    return {"SERVICE_RESULT": result, "EXIT_CODE": code, "EXIT_STATUS": status, "INVOCATION_ID": invocation}


def unit_failed(result="exit-code", code="exited", status="1", invocation="inv1"):
    return {
        "MONITOR_SERVICE_RESULT": result,
        "MONITOR_EXIT_CODE": code,
        "MONITOR_EXIT_STATUS": status,
        "MONITOR_INVOCATION_ID": invocation,
        "MONITOR_UNIT": UNIT,
    }


# --- configuration -------------------------------------------------------------------------


def test_shipped_template_sets_no_channel_and_works_uncommented(tmp_path):
    text = render.template_text(command.ALERT_CONFIG_TEMPLATE)
    template = tmp_path / "alert.conf"
    template.write_text(text)
    assert load_config(str(template)) == Settings()
    # Its commented-out settings ("#key = value", "#[section]") are a working example.
    template.write_text(re.sub(r"^#(?=\w+ = |\[)", "", text, flags=re.MULTILINE))
    settings = load_config(str(template))
    assert settings.max_alerts == 3 and settings.window == 3600
    assert [type(c) for c in settings.channels] == [Webhook, Email, Command]


def test_missing_config_means_no_channel(tmp_path):
    assert load_config(str(tmp_path / "missing.conf")).channels == ()


def test_config_with_every_channel(tmp_path):
    config = tmp_path / "alert.conf"
    config.write_text(
        "[alert]\nmax_alerts = 2\nwindow = 30min\ntimeout = 5s\nerror_lines = 4\n"
        "[webhook:ops]\nurl = https://example.com/hook?a=%20\n"
        "header = Authorization: Bearer x\n  X-Team: data\n"
        "[webhook:chat]\nurl = http://chat.local/hooks/1\nslack = yes\n"
        "[email]\nto = a@example.com, b@example.com\nfrom = airflow@example.com\n"
        "[command]\ncommand = /usr/local/bin/page --service 'air flow'\n"
    )
    settings = load_config(str(config))
    assert (settings.max_alerts, settings.window, settings.timeout, settings.error_lines) == (2, 1800, 5, 4)
    assert settings.channels == (
        Webhook(
            "webhook:ops",
            "https://example.com/hook?a=%20",
            False,
            (("Authorization", "Bearer x"), ("X-Team", "data")),
        ),
        Webhook("webhook:chat", "http://chat.local/hooks/1", True),
        Email("email:email", ("a@example.com", "b@example.com"), "airflow@example.com"),
        Command("command:command", ("/usr/local/bin/page", "--service", "air flow")),
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[slack]\nurl = x\n", "unknown section [slack]"),
        ("[webhook]\nurl = https://x\nslak = true\n", "no key slak"),
        ("[webhook]\nurl = ftp://x\n", "http:// or https://"),
        ("[alert]\nmax_alerts = 0\n", "at least 1"),
        ("[alert]\nwindow = soon\n", "expected a duration"),
        ("[email]\nfrom = a@b\n", "to = is required"),
        ("[command]\ncommand =\n", "command = is required"),
        ("[webhook]\nurl = https://x\nheader = no colon\n", "Name: value"),
        ("no section\n", "File contains no section headers"),
    ],
)
def test_config_problems_say_what_to_fix(tmp_path, text, problem):
    config = tmp_path / "alert.conf"
    config.write_text(text)
    with pytest.raises(ConfigProblem, match=re.escape(problem)):
        load_config(str(config))


def test_durations():
    assert [parse_duration(t, "k") for t in ("90", "90s", "5min", "1h", "2d", "250ms")] == [
        90,
        90,
        300,
        3600,
        172800,
        0.25,
    ]


# --- what systemd will do, what an alert says ----------------------------------------------


@pytest.mark.parametrize(
    "result, code, status, props, restarts",
    [
        ("exit-code", "exited", "1", SHIPPED, True),
        ("exit-code", "exited", "78", SHIPPED, False),
        ("watchdog", "dumped", "ABRT", SHIPPED, True),
        ("signal", "killed", "KILL", {**SHIPPED, "RestartPreventExitStatus": "78 KILL"}, False),
        ("success", "exited", "0", SHIPPED, False),
        ("exit-code", "exited", "1", {"Restart": "no"}, False),
        ("exit-code", "exited", "3", {"Restart": "no", "RestartForceExitStatus": "3"}, True),
        ("exit-code", "exited", "1", {"Restart": "on-abnormal"}, False),
        ("watchdog", "dumped", "ABRT", {"Restart": "on-watchdog"}, True),
        ("core-dump", "dumped", "SEGV", {"Restart": "on-abort"}, True),
        ("success", "exited", "0", {"Restart": "always"}, True),
    ],
)
def test_will_restart_follows_systemd(result, code, status, props, restarts):
    assert will_restart(result, code, status, props) is restarts


def test_a_stop_describes_how_the_run_ended():
    assert Stop("exit-code", "exited", "1").describe() == ("result 'exit-code', exit status 1")
    assert Stop("watchdog", "dumped", "ABRT").describe() == ("result 'watchdog', signal ABRT (core dumped)")
    assert Stop("").describe() == "result 'unknown'"


def test_unit_names():
    assert unit_name("airflow-scheduler") == UNIT
    assert unit_name(UNIT) == UNIT
    assert unit_name("airflow-db-clean.timer") == "airflow-db-clean.timer"


# --- one alert per failure, rate-limited -----------------------------------------------------


def test_rate_limit_lets_the_first_of_a_loop_through_and_counts_what_it_holds_back():
    settings = Settings(max_alerts=2, window=3600)
    state: dict = {}
    failed = Stop("exit-code")
    outcomes = [admit(state, None, 0, settings, final=False)]  # after a good run: first
    outcomes += [admit(state, failed, t, settings, final=False) for t in (10, 20, 30)]
    outcomes.append(admit(state, failed, 40, settings, final=True))  # the unit stays down
    outcomes.append(admit(state, Stop("success"), 50, settings, final=False))  # new loop
    outcomes.append(admit(state, failed, 3700, settings, final=False))  # window moved on
    assert outcomes == [0, 0, None, None, 2, 0, 0]


def test_a_clean_stop_is_recorded_and_not_alerted(tmp_path):
    env = after_run(result="success", code="exited", status="0")
    assert alert(UNIT, env, PerUnit(), systemd=FakeSystemd(), state_dir=str(tmp_path)) is None
    stop = previous_stop(UNIT, str(tmp_path))
    assert (stop.result, stop.invocation_id, stop.restarts) == ("success", "inv1", False)

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    # The service reads its last run at start; the rate limit's state is the alert's alone.
    assert (mode(tmp_path / "runs"), mode(tmp_path / "runs" / f"{UNIT}.json")) == (0o755, 0o644)
    assert json.loads((tmp_path / "runs" / f"{UNIT}.json").read_text()) == {"last_stop": stop.record()}
    assert (mode(tmp_path), mode(tmp_path / f"{UNIT}.json"), mode(tmp_path / f"{UNIT}.lock")) == (
        0o711,
        0o600,
        0o600,
    )


def test_the_instance_name_carries_how_the_run_ended():
    assert parse_instance("airflow-scheduler") == (UNIT, {})
    assert parse_instance("airflow-scheduler:watchdog:dumped:ABRT:inv7") == (
        UNIT,
        {"SERVICE_RESULT": "watchdog", "EXIT_CODE": "dumped", "EXIT_STATUS": "ABRT", "INVOCATION_ID": "inv7"},
    )
    # the unit's ExecStartPost=: it is READY again
    assert parse_instance("airflow-scheduler:started") == (UNIT, {"STARTED": "1"})
    # a run whose main process never started: systemd fills in nothing for the exit
    assert parse_instance("airflow-scheduler:resources:::inv8")[1]["EXIT_CODE"] == ""
    for bad in ("airflow-scheduler:exit-code", "airflow-scheduler::exited:1:inv1", "a:b:c:d:e:f"):
        with pytest.raises(ValueError, match="expected UNIT or UNIT:RESULT"):
            parse_instance(bad)


def test_a_failure_names_the_unit_the_result_and_the_last_error_of_that_run(tmp_path):
    entries = [
        entry("an error of an earlier run", invocation="inv0"),
        entry("Exception when executing SchedulerJob._run_scheduler_loop\nTraceback ...", priority=3),
        entry("a warning", priority=4),
        entry(
            "airflow-systemd scheduler: failed with RuntimeError: injected",
            MESSAGE_ID=journal.CRASHED,
            EXCEPTION_TYPE="RuntimeError",
            EXCEPTION_MESSAGE="injected",
        ),
    ]
    payload = alert(
        UNIT,
        after_run(),
        PerUnit(),
        systemd=FakeSystemd(entries=entries),
        state_dir=str(tmp_path),
        now=0,
    )
    assert payload["unit"] == UNIT
    assert (payload["kind"], payload["result"], payload["exit_status"], payload["restarts"]) == (
        "failed",
        "exit-code",
        "1",
        True,
    )
    assert payload["errors"] == [
        "Exception when executing SchedulerJob._run_scheduler_loop",
        "airflow-systemd scheduler: failed with RuntimeError: injected",
    ]
    assert payload["last_error"] == "airflow-systemd scheduler: failed with RuntimeError: injected"
    assert payload["exception"] == {"type": "RuntimeError", "message": "injected"}
    assert payload["summary"].startswith(f"{UNIT} failed on ")
    assert "result 'exit-code', exit status 1" in payload["summary"]
    assert payload["summary"].endswith(": airflow-systemd scheduler: failed with RuntimeError: injected")
    assert payload["journal"] == "journalctl _SYSTEMD_INVOCATION_ID=inv1 + INVOCATION_ID=inv1"
    assert payload["time"] == "1970-01-01T00:00:00+00:00"


def test_a_crash_loop_alerts_its_first_failure_then_no_more_than_the_limit(tmp_path):
    settings = PerUnit(max_alerts=2, window=3600)
    sent, start = [], time.time()
    for i in range(6):
        payload = alert(
            UNIT,
            after_run(invocation=f"inv{i}"),
            settings,
            systemd=FakeSystemd(),
            state_dir=str(tmp_path),
            now=start + 20 * i,
        )
        sent.append(payload and payload["invocation_id"])
    assert sent == ["inv0", "inv1", None, None, None, None]
    later = alert(
        UNIT,
        after_run(invocation="inv6"),
        settings,
        systemd=FakeSystemd(),
        state_dir=str(tmp_path),
        now=start + 4000,
    )
    assert later["held_back"] == 4 and "4 earlier failure alert(s) held back" in later["summary"]


def test_a_failure_systemd_does_not_restart_is_one_alert(tmp_path):
    args = dict(systemd=FakeSystemd(), state_dir=str(tmp_path))
    payload = alert(UNIT, after_run(status="78"), PerUnit(), **args)
    assert (payload["kind"], payload["restarts"]) == ("down", False)
    assert "stays down" in payload["summary"]
    assert alert(UNIT, unit_failed(status="78"), PerUnit(), **args) is None


def test_a_failure_systemd_does_not_restart_is_one_alert_whichever_hook_comes_first(tmp_path):
    # systemd starts the after-run and the OnFailure= alert for it; both run on their own.
    args = dict(systemd=FakeSystemd(), state_dir=str(tmp_path))
    assert alert(UNIT, unit_failed(status="78"), PerUnit(), **args)["kind"] == "down"
    assert alert(UNIT, after_run(status="78"), PerUnit(), **args) is None
    assert previous_stop(UNIT, str(tmp_path)).exit_status == "78"  # still recorded


def test_giving_up_after_restarts_is_alerted_once(tmp_path):
    entries = [entry("airflow-scheduler.service: Start request repeated too quickly.", priority=4)]
    args = dict(systemd=FakeSystemd(entries=entries), state_dir=str(tmp_path))
    settings = PerUnit(max_alerts=1)
    assert alert(UNIT, after_run(invocation="inv0"), settings, **args)["kind"] == "failed"
    assert alert(UNIT, after_run(), settings, **args) is None  # held back by the limit
    payload = alert(UNIT, unit_failed(), settings, **args)  # the limit does not apply
    assert (payload["kind"], payload["start_limit_hit"], payload["held_back"]) == ("down", True, 1)
    assert "gave up restarting it (start limit hit" in payload["summary"]
    assert alert(UNIT, unit_failed(), settings, **args) is None  # a second OnFailure run


def test_a_unit_failed_with_no_run_recorded_is_alerted(tmp_path):
    payload = alert(UNIT, unit_failed(), PerUnit(), systemd=FakeSystemd(), state_dir=str(tmp_path))
    assert payload["kind"] == "down"


def test_dry_run_records_nothing(tmp_path):
    payload = alert(
        UNIT, after_run(), PerUnit(), systemd=FakeSystemd(), state_dir=str(tmp_path), dry_run=True
    )
    assert payload["kind"] == "failed"
    assert list(tmp_path.iterdir()) == []


def test_by_hand_it_reports_the_current_state():
    props = {
        "Result": "watchdog",
        "ExecMainCode": "3",
        "ExecMainStatus": "6",
        "InvocationID": "inv9",
        "ActiveState": "activating",
        "SubState": "auto-restart",
    }
    payload = alert(UNIT, {}, PerUnit(), systemd=FakeSystemd(props=props))
    assert (payload["kind"], payload["exit_code"], payload["exit_status"]) == ("status", "dumped", "ABRT")
    assert "activating/auto-restart" in payload["summary"]


# --- delivery ------------------------------------------------------------------------------


def _payload():
    return build_payload(
        UNIT,
        Stop("exit-code", "exited", "1", "inv1"),
        "failed",
        {"errors": ["boom"], "exception": None, "start_limit_hit": False},
        0,
        0,
        "host1",
    )


def test_webhooks_get_the_json_or_a_slack_message():
    with Receiver() as receiver:
        settings = PerUnit(
            channels=(
                Webhook("webhook:json", receiver.url, headers=(("Authorization", "Bearer t"),)),
                Webhook("webhook:slack", receiver.url, slack=True),
            )
        )
        assert deliver(settings, _payload()) == 2
        bodies = sorted(receiver.bodies, key=lambda b: "text" in b)
    assert bodies[0] == _payload()
    assert bodies[1] == {"text": _payload()["summary"] + "\n```\nboom\n```"}
    headers = next(h for _, b, h in receiver.posts if "unit" in b)
    assert headers["Authorization"] == "Bearer t"
    assert headers["Content-Type"] == "application/json"


def test_command_and_mail_channels(tmp_path):
    out = tmp_path / "command.json"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat > {tmp_path}/mail\n')
    sendmail.chmod(0o755)
    settings = PerUnit(
        channels=(
            Command(
                "command:c",
                (sys.executable, "-c", f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"),
            ),
            Email("email:e", ("a@example.com", "b@example.com"), "airflow@example.com", str(sendmail)),
        )
    )
    assert deliver(settings, _payload()) == 2
    assert json.loads(out.read_text()) == _payload()
    assert (tmp_path / "args").read_text().split() == ["-t", "-oi"]
    mail = (tmp_path / "mail").read_text()
    assert "To: a@example.com, b@example.com" in mail
    assert "From: airflow@example.com" in mail
    assert f"Subject: [airflow-systemd] {UNIT} failed on host1" in mail
    assert "  boom" in mail


def test_a_failing_channel_is_logged_and_the_others_still_get_it(caplog_airflow_systemd):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with Receiver() as good, Receiver(status=500) as bad:
        settings = PerUnit(
            timeout=5,
            channels=(
                Webhook("webhook:good", good.url),
                Webhook("webhook:500", bad.url),
                Webhook("webhook:closed", f"http://127.0.0.1:{port}/hooks/secret"),
                Command("command:false", ("false",)),
            ),
        )
        assert deliver(settings, _payload()) == 1
        assert len(good.bodies) == 1
    text = caplog_airflow_systemd.getvalue()
    assert "webhook:500 failed: HTTP 500" in text
    assert "webhook:closed failed: POST to http://127.0.0.1:" in text
    assert "secret" not in text  # a webhook URL's path is its secret
    assert "command:false failed: false exited with status 1" in text
    assert "delivered to webhook:good" in text


@pytest.fixture
def caplog_airflow_systemd():
    """What the airflow_systemd logger writes (it does not propagate, so caplog misses it)."""
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    journal.log.addHandler(handler)
    journal.log.setLevel(logging.INFO)
    yield stream
    journal.log.removeHandler(handler)


def _alert_command(tmp_path, config_text, env):
    """The command as airflow-alert@.service runs it: how the run ended is in the instance
    name (see the units' ExecStopPost=), what systemd gives an OnFailure= unit in ``env``."""
    config = tmp_path / "alert.conf"
    config.write_text(config_text)
    instance = "airflow-scheduler"
    if "SERVICE_RESULT" in env:
        keys = ("SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS", "INVOCATION_ID")
        instance += "".join(f":{env[key]}" for key in keys)
        env = {}
    # -I as the unit runs it; the checkout under test first on sys.path (-I leaves out the working
    # directory, and the venv may hold another checkout: a worktree's tests ran main's code).
    root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import runpy, sys; sys.path.insert(0, {root!r}); "
        "runpy.run_module('airflow_systemd', run_name='__main__', alter_sys=True)"
    )
    command = [sys.executable, "-I", "-c", code, "alert", instance]
    return subprocess.run(
        [*command, "--config", str(config), "--state-dir", str(tmp_path / "state")],
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_exits_0_when_every_channel_fails(tmp_path):
    with Receiver(status=503) as receiver:
        result = _alert_command(
            tmp_path, f"[alert]\nincident_window = 0\n[webhook]\nurl = {receiver.url}\n", after_run()
        )
        assert len(receiver.bodies) == 1
    assert result.returncode == 0
    assert "webhook:webhook failed: HTTP 503" in result.stderr
    assert json.loads((tmp_path / "state" / f"{UNIT}.json").read_text())["last_stop"]["result"] == "exit-code"


def test_a_hanging_channel_is_given_up_on_in_time(tmp_path):
    with Receiver(delay=30) as receiver:
        t0 = time.monotonic()
        result = _alert_command(
            tmp_path,
            f"[alert]\ntimeout = 1s\nincident_window = 0\n[webhook]\nurl = {receiver.url}\n",
            after_run(),
        )
        elapsed = time.monotonic() - t0
    assert result.returncode == 0
    assert "webhook:webhook failed" in result.stderr
    assert elapsed < 10


def test_a_broken_config_is_logged_and_the_run_still_recorded(tmp_path):
    result = _alert_command(tmp_path, "[webhook]\nurl = nowhere\n", after_run())
    assert result.returncode == 0
    assert "url must be an http:// or https:// URL" in result.stderr
    assert (tmp_path / "state" / f"{UNIT}.json").exists()


# --- install-units -------------------------------------------------------------------------


def test_alert_unit_runs_the_venvs_command_and_verifies(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to("/bin/true")
    text = render.render_alert_unit(str(venv))
    assert files.stamped(render.ALERT_UNIT, text).splitlines()[0] == files.MARKER
    assert f"ExecStart={venv}/bin/python3 -I -m airflow_systemd alert %i" in text.splitlines()
    assert "User=airflow-alert" in text.splitlines()
    instance = tmp_path / "airflow-alert@airflow-scheduler.service"
    instance.write_text(text)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True)
    assert (result.returncode, result.stderr.strip()) == (0, "")


def test_a_non_default_alert_config_is_passed_to_the_alert_command():
    default = render.render_alert_unit("/v").splitlines()
    assert "ExecStart=/v/bin/python3 -I -m airflow_systemd alert %i" in default
    assert render.render_alert_unit("/v", command.ALERT_CONFIG).splitlines() == default
    unit = render.render_alert_unit("/v", "/srv/alert.conf").splitlines()
    # the alert command's line, and no other
    assert [line for line in unit if line not in default] == [
        "ExecStart=/v/bin/python3 -I -m airflow_systemd alert %i --config /srv/alert.conf"
    ]
    assert len(unit) == len(default)


@needs_root
def test_install_writes_the_alert_unit_the_catalog_and_the_channels_template(tmp_path, capsys):
    args = ["install-units", "--unit-dir", str(tmp_path), "--env-file", str(tmp_path / "env")]
    args += [
        "--alert-config",
        str(tmp_path / "etc" / "alert.conf"),
        "--catalog-dir",
        str(tmp_path / "catalog"),
    ]
    args += ["--user", "nobody", "--airflow-home", "/var/lib/airflow-units-test", "--no-reload"]
    args += ["--secrets-file", str(tmp_path / "secrets.env"), "--alert-user", "daemon"]
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    parsed = parser.parse_args(args)
    assert parsed.func(parsed) == 0, capsys.readouterr().err
    alert_unit = (tmp_path / render.ALERT_UNIT).read_text()
    config = f"--config {tmp_path}/etc/alert.conf"
    assert f"ExecStart={sys.prefix}/bin/python3 -I -m airflow_systemd alert %i {config}" in alert_unit
    assert tuple(line for line in alert_unit.splitlines() if line.startswith(("User=", "Group="))) == (
        "User=daemon",
        "Group=daemon",
    )
    scheduler = (tmp_path / render.SCHEDULER_UNIT).read_text().splitlines()
    # The unit only asks systemd to start the alert; how the run ended is the instance name.
    assert (
        "ExecStopPost=-+systemctl start "
        "airflow-alert@%N:${SERVICE_RESULT}:${EXIT_CODE}:${EXIT_STATUS}:${INVOCATION_ID}.service" in scheduler
    )
    assert "OnFailure=airflow-alert@%N.service" in scheduler
    # Once READY, it tells the alert it is active again (the end of an incident).
    assert "ExecStartPost=-+systemctl start --no-block airflow-alert@%N:started.service" in scheduler
    catalog = (tmp_path / "catalog" / command.CATALOG).read_text()
    assert catalog.startswith(files.MARKER) and journal.CRASHED in catalog
    config = tmp_path / "etc" / "alert.conf"
    # readable by root and the alert's account only
    assert (stat.S_IMODE(config.stat().st_mode), config.stat().st_uid) == (0o640, 0)
    assert config.stat().st_gid == pwd.getpwnam("daemon").pw_gid
    assert config.read_text() == render.template_text(command.ALERT_CONFIG_TEMPLATE)
    assert "skipped journalctl --update-catalog" in capsys.readouterr().err


def test_alert_unit_mounts_code_under_tmp_back_into_its_private_tmp():
    # A checkout under /tmp, as CI's fresh clone: the alert unit's PrivateTmp=yes hid the venv
    # and the OnFailure= alert failed with status=203/EXEC: no "down" alert.
    sandbox = plan_sandbox("/var/lib/airflow", ["/tmp/clone/.venvs/a", "/tmp/clone/src", "/usr"])
    lines = render.render_alert_unit("/tmp/clone/.venvs/a", sandbox=sandbox).splitlines()
    bind = "BindReadOnlyPaths=/tmp/clone/.venvs/a /tmp/clone/src"
    assert lines.index(bind) > lines.index("PrivateTmp=yes")
    elsewhere = render.render_alert_unit("/opt/venv", sandbox=plan_sandbox("/var/lib/airflow", ["/opt/venv"]))
    assert not [line for line in elsewhere.splitlines() if line.startswith("BindReadOnlyPaths=")]


def _bound_read_only(lines: list[str]) -> set[str]:
    return {
        p for line in lines if line.startswith("BindReadOnlyPaths=") for p in line.split("=", 1)[1].split()
    }


@needs_root
def test_install_from_a_venv_under_tmp_lets_the_alert_unit_see_it(tmp_path, capsys):
    # This virtualenv seen through a path under /tmp, as from a checkout there.
    parent = Path(tempfile.mkdtemp(prefix="airflow-systemd-alert-", dir="/tmp"))
    try:
        parent.chmod(0o755)  # the service's user must reach it (checked as that user)
        venv = parent / "venv"
        venv.symlink_to(sys.prefix)
        args = ["install-units", "--venv", str(venv), "--unit-dir", str(tmp_path)]
        args += ["--env-file", str(tmp_path / "env"), "--alert-config", str(tmp_path / "alert.conf")]
        args += ["--catalog-dir", str(tmp_path / "catalog"), "--user", "nobody", "--no-reload"]
        args += ["--secrets-file", str(tmp_path / "secrets.env"), "--alert-user", "daemon"]
        parser = argparse.ArgumentParser()
        command.register(parser.add_subparsers())
        parsed = parser.parse_args(args)
        assert parsed.func(parsed) == 0, capsys.readouterr().err
        alert_unit = (tmp_path / render.ALERT_UNIT).read_text().splitlines()
        assert (
            f"ExecStart={venv}/bin/python3 -I -m airflow_systemd alert %i --config {tmp_path}/alert.conf"
            in alert_unit
        )
        assert str(venv) in _bound_read_only(alert_unit)
        assert str(venv) in _bound_read_only((tmp_path / render.SCHEDULER_UNIT).read_text().splitlines())
    finally:
        shutil.rmtree(parent)


@needs_root
def test_code_the_service_user_can_change_is_refused():
    account = access.resolve_account("nobody", None)
    parent = Path(tempfile.mkdtemp(prefix="airflow-systemd-alert-", dir="/var/cache"))
    try:
        parent.chmod(0o755)
        venv = parent / "venv"
        (venv / "lib").mkdir(parents=True)
        (venv / "lib" / "module.py").write_text("")
        access.refuse_code_writable_by(account, [str(venv)])  # root's: fine
        os.chown(venv / "lib" / "module.py", account.uid, account.gid)
        with pytest.raises(
            access.Refusal, match=r"nobody can write to .*/venv/lib/module\.py.* airflow-alert"
        ):
            access.refuse_code_writable_by(account, [str(venv)])
        os.chown(venv / "lib" / "module.py", 0, 0)
        os.chown(parent, account.uid, account.gid)  # could swap the whole venv
        with pytest.raises(access.Refusal, match=f"nobody can write to {parent}:"):
            access.refuse_code_writable_by(account, [str(venv)])
    finally:
        shutil.rmtree(parent)


def test_uninstall_does_not_stop_templates(tmp_path, monkeypatch):
    (tmp_path / render.SCHEDULER_UNIT).write_text(files.MARKER + "\n")
    (tmp_path / render.ALERT_UNIT).write_text(files.MARKER + "\n")
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / command.CATALOG).write_text(files.MARKER + "\n")
    calls = []
    monkeypatch.setattr(files, "systemd_booted", lambda: True)
    monkeypatch.setattr(files, "systemctl", lambda *args: calls.append(args))
    monkeypatch.setattr(files, "update_catalog", lambda d: calls.append(("update-catalog", d)))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    parsed = parser.parse_args(
        ["uninstall-units", "--unit-dir", str(tmp_path), "--catalog-dir", str(catalog_dir)]
    )
    assert parsed.func(parsed) == 0
    assert calls == [
        ("disable", "--now", render.SCHEDULER_UNIT),
        ("update-catalog", str(catalog_dir)),
        ("daemon-reload",),
    ]
    assert list(tmp_path.iterdir()) == [catalog_dir] and not list(catalog_dir.iterdir())
