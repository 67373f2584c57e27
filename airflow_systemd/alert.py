"""`airflow-systemd alert INSTANCE`: tell someone that an Airflow service failed.

It runs as its own account (``airflow-alert``: not root, not the airflow user that runs DAG
code) in ``airflow-alert@.service``, started two ways:

* After every run of an Airflow unit, by its
  ``ExecStopPost=-+systemctl start airflow-alert@%N:${SERVICE_RESULT}:${EXIT_CODE}:...``: the
  one hook that sees the failures systemd restarts automatically (OnFailure= fires only once
  a unit has ended up ``failed``). systemd fills in how the run ended; the instance name
  carries it here (:func:`parse_instance`), so the privileged line only asks systemd to start
  a unit and interprets nothing. A run that ended with ``success`` is only recorded.
* ``OnFailure=airflow-alert@%N.service``, once the unit has ended up failed, with
  $MONITOR_SERVICE_RESULT & co. A failure systemd was never going to restart (exit 78, a
  configuration error) is alerted by whichever of the two comes first; this adds the alert
  that systemd gave up restarting (start limit hit).
* By hand, for the unit's current state: to try the channels (``--dry-run`` prints the payload).

One alert per failure, rate-limited per unit: at most ``max_alerts`` per ``window``, except
that the first failure after a run that did not fail, and a unit that stays down, are always
delivered. Alerts held back are counted in the next one. The rate-limit state lives in
:data:`STATE_DIR`, which only this account can read; how each unit's last run ended is also
written to :data:`RUNS_DIR` beneath it, readable by all (:func:`previous_stop` is how a
starting component learns that its previous run failed).

Channels, in :data:`DEFAULT_CONFIG` (``alert.conf`` next to the units documents every key):
an HTTP POST of the JSON payload (``slack = true``: Slack's ``{"text": ...}`` instead), mail
through the local sendmail, or any command with the JSON on its stdin. All are tried, in
parallel, each within ``timeout``. A channel that fails is logged; the command exits 0
whatever happens, so that the alert unit never loops and the service's result stays its own.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import dataclasses
import datetime
import email.message
import fcntl
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping

from airflow_systemd import __version__, journal
from airflow_systemd.contract import ALERT_CONFIG as DEFAULT_CONFIG
from airflow_systemd.contract import ALERT_RUNS_DIR as RUNS_DIR
from airflow_systemd.contract import ALERT_STATE_DIR as STATE_DIR

log = logging.getLogger("airflow_systemd")

# systemd's own words for a start refused by StartLimitBurst= (it keeps Result= as it was).
START_LIMIT_TEXT = "Start request repeated too quickly"
EXIT_CODES = {"1": "exited", "2": "killed", "3": "dumped"}  # ExecMainCode= (CLD_*)


class ConfigProblem(Exception):
    """alert.conf cannot be used as it is; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    slack: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Email:
    name: str
    to: tuple[str, ...]
    sender: str | None = None
    sendmail: str = "/usr/sbin/sendmail"


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    max_alerts: int = 3
    window: float = 3600.0
    timeout: float = 10.0
    error_lines: int = 10
    channels: tuple = ()


# --- configuration -------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*$")
_UNITS = {None: 1, "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
_KEYS = {
    "alert": {"max_alerts", "window", "timeout", "error_lines"},
    "webhook": {"url", "slack", "header"},
    "email": {"to", "from", "sendmail"},
    "command": {"command"},
}


def parse_duration(text: str, key: str) -> float:
    """Seconds from "90", "90s", "5min", "1h" (systemd.time(7) style, one unit)."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigProblem(f"{key} = {text!r}: expected a duration such as 30s, 5min or 1h")
    return float(match[1]) * _UNITS[match[2]]


def load_config(path: str) -> Settings:
    """The settings in ``path``; a missing file means no channel. Raises ConfigProblem."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return Settings()
    except (OSError, configparser.Error) as exc:
        raise ConfigProblem(f"{path}: {exc}") from None
    values: dict[str, object] = {}
    channels = []
    for section in parser.sections():
        kind, _, name = section.partition(":")
        kind, name = kind.strip(), (name.strip() or kind.strip())
        if kind not in _KEYS or (kind == "alert" and name != "alert"):
            raise ConfigProblem(
                f"{path}: unknown section [{section}]: expected [alert], [webhook], [email] or "
                "[command], each channel kind optionally named: [webhook:ops]"
            )
        options = parser[section]
        unknown = set(options) - _KEYS[kind]
        if unknown:
            raise ConfigProblem(f"{path}: [{section}] has no key {', '.join(sorted(unknown))}")
        where = f"{path}: [{section}]"
        try:
            if kind == "alert":
                values.update(_alert_options(options, where))
            else:
                channels.append(_channel(kind, f"{kind}:{name}", options, where))
        except ValueError as exc:
            raise ConfigProblem(f"{where}: {exc}") from None
    return Settings(channels=tuple(channels), **values)


def _alert_options(options, where: str) -> dict:
    values: dict[str, object] = {}
    if "max_alerts" in options:
        values["max_alerts"] = options.getint("max_alerts")
        if values["max_alerts"] < 1:
            raise ConfigProblem(f"{where}: max_alerts must be at least 1 (the first failure always goes out)")
    if "error_lines" in options:
        values["error_lines"] = max(1, options.getint("error_lines"))
    for key in ("window", "timeout"):
        if key in options:
            values[key] = parse_duration(options[key], f"{where} {key}")
    return values


def _channel(kind: str, name: str, options, where: str):
    if kind == "webhook":
        url = options.get("url", "").strip()
        if not url.startswith(("http://", "https://")):
            raise ConfigProblem(f"{where}: url must be an http:// or https:// URL")
        headers = []
        for line in options.get("header", "").splitlines():
            if line.strip():
                key, sep, value = line.partition(":")
                if not sep:
                    raise ConfigProblem(f"{where}: header {line.strip()!r}: expected 'Name: value'")
                headers.append((key.strip(), value.strip()))
        return Webhook(name, url, options.getboolean("slack", fallback=False), tuple(headers))
    if kind == "email":
        to = tuple(a.strip() for a in re.split(r"[,\s]+", options.get("to", "")) if a.strip())
        if not to:
            raise ConfigProblem(f"{where}: to = is required (one or more addresses)")
        return Email(name, to, options.get("from") or None, options.get("sendmail", Email.sendmail))
    argv = tuple(shlex.split(options.get("command", "")))
    if not argv:
        raise ConfigProblem(f"{where}: command = is required")
    return Command(name, argv)


# --- state ---------------------------------------------------------------------------------


def unit_name(name: str) -> str:
    """The full name: airflow-scheduler -> airflow-scheduler.service, as systemctl reads it."""
    return (
        name
        if re.search(r"\.(service|socket|timer|target|mount|path|scope|slice)$", name)
        else f"{name}.service"
    )


def booted_at() -> float:
    """When this machine booted, on the wall clock.

    Not the boot ID: a container overmounts /proc/sys/kernel/random/boot_id with its own, and a
    unit with ProtectKernelTunables=yes sees the host's instead. CLOCK_BOOTTIME is the same
    for everyone.
    """
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def this_boot(stop: object) -> bool:
    """True if ``stop`` (a recorded run) ended after this machine booted."""
    return (
        isinstance(stop, dict) and isinstance(stop.get("time"), (int, float)) and stop["time"] > booted_at()
    )


def _state_file(state_dir: str, unit: str) -> str:
    return os.path.join(state_dir, f"{unit}.json")


def _run_file(state_dir: str, unit: str) -> str:
    return os.path.join(state_dir, RUNS_DIR, f"{unit}.json")


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_state(unit: str, state_dir: str = STATE_DIR) -> dict:
    return _read_json(_state_file(state_dir, unit))


def previous_stop(unit: str, state_dir: str | None = None) -> dict | None:
    """How the last run of ``unit`` ended, as recorded after it; None if not in this boot.

    Read by the starting service itself, from the one file of the alert's state it may read.
    A record from an earlier boot is ignored: the runs between it and the reboot may have
    ended without anyone recording it (a power cut).
    """
    stop = _read_json(_run_file(state_dir or STATE_DIR, unit)).get("last_stop")
    return stop if this_boot(stop) else None


def _write_json(path: str, value: dict, mode: int) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, path)


@contextlib.contextmanager
def locked_state(unit: str, state_dir: str = STATE_DIR) -> Iterator[dict]:
    """The unit's state, read and written back under an exclusive lock (flock).

    The directory is 0711 and its files 0600: DAG code (the airflow user) can neither read the
    rate limit's state nor list the units; it can open ``runs/UNIT.json``, the last run's end
    (0644 in a 0755 directory), which the service reads at start.
    """
    runs = os.path.join(state_dir, RUNS_DIR)
    os.makedirs(runs, exist_ok=True)
    os.chmod(state_dir, 0o711)
    os.chmod(runs, 0o755)
    with open(os.open(os.path.join(state_dir, f"{unit}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read_state(unit, state_dir)
        yield state
        _write_json(_state_file(state_dir, unit), state, 0o600)
        if "last_stop" in state:
            _write_json(_run_file(state_dir, unit), {"last_stop": state["last_stop"]}, 0o644)


def admit(state: dict, previous: dict | None, now: float, settings: Settings, *, final: bool) -> int | None:
    """Apply the rate limit to one failure; record the outcome in ``state``.

    Returns None if the alert is held back, else how many alerts were held back before it.
    A failure that ends the unit for good (``final``) and the first failure after a run that
    did not fail are always let through.
    """
    recent = [t for t in state.get("deliveries", []) if now - t < settings.window]
    first = previous is None or previous.get("result") == "success"
    if final or first or len(recent) < settings.max_alerts:
        held_back = int(state.get("held_back", 0))
        state.update(deliveries=[*recent, now], held_back=0)
        return held_back
    state.update(deliveries=recent, held_back=int(state.get("held_back", 0)) + 1)
    return None


# --- what systemd says ---------------------------------------------------------------------


def will_restart(result: str, exit_code: str, exit_status: str, props: Mapping[str, str]) -> bool:
    """Whether systemd restarts a service that ended like this (service_shall_restart())."""
    if result == "success" and props.get("Restart") not in ("always", "on-success"):
        return False

    def listed(key: str) -> bool:
        values = props.get(key, "").split()
        if exit_code == "exited":
            return exit_status in values
        if exit_code in ("killed", "dumped"):
            return exit_status in values or f"SIG{exit_status}" in values
        return False

    if listed("RestartPreventExitStatus"):
        return False
    if listed("RestartForceExitStatus"):
        return True
    return {
        "always": True,
        "on-success": result == "success",
        "on-failure": result != "success",
        "on-abnormal": result not in ("success", "exit-code"),
        "on-watchdog": result == "watchdog",
        "on-abort": result in ("signal", "core-dump"),
    }.get(props.get("Restart", "no"), False)


def describe_end(stop: Mapping[str, object]) -> str:
    """ "result 'exit-code', exit status 1" or "result 'watchdog', signal ABRT (core dumped)"."""
    code, status = stop.get("exit_code"), stop.get("exit_status")
    how = ""
    if code == "exited":
        how = f", exit status {status}"
    elif code in ("killed", "dumped"):
        how = f", signal {status}" + (" (core dumped)" if code == "dumped" else "")
    return f"result '{stop.get('result') or 'unknown'}'{how}"


class Systemd:
    """The two questions asked of systemd; tests substitute their own answers."""

    def __init__(self, read_journal: bool = True) -> None:
        self.read_journal = read_journal  # no channel to tell: spare the unit's stop the time

    def show(self, unit: str, *props: str) -> dict[str, str]:
        try:
            out = subprocess.run(
                ["systemctl", "show", "-p", ",".join(props), unit],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> list[dict]:
        """The unit's recent journal entries of priority warning or higher, oldest first."""
        if not self.read_journal:
            return []
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            # Entries logged before this call are in the files once it returns.
            subprocess.run(["journalctl", "--sync"], capture_output=True, timeout=5)
        try:
            out = subprocess.run(
                ["journalctl", "-u", unit, "-p", "warning", "-n", "500", "-o", "json", "--no-pager"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        entries = []
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries


def _message(entry: Mapping) -> str:
    value = entry.get("MESSAGE", "")
    if isinstance(value, list):  # journalctl's JSON for a value that is not valid UTF-8
        value = bytes(v for v in value if isinstance(v, int)).decode("utf-8", "replace")
    return str(value)


def evidence(entries: list[dict], invocation_id: str, limit: int) -> dict:
    """The error lines, the crash, and whether the start limit was hit, for one run."""
    if invocation_id:
        entries = [
            e for e in entries if invocation_id in (e.get("_SYSTEMD_INVOCATION_ID"), e.get("INVOCATION_ID"))
        ]
    errors, crash, start_limit = [], None, False
    for entry in entries:
        text = _message(entry)
        start_limit = start_limit or START_LIMIT_TEXT in text
        try:
            urgent = int(entry.get("PRIORITY", 6)) <= 3
        except ValueError:
            urgent = False
        if urgent:
            errors.append((text.strip().splitlines() or [""])[0][:500])
        if entry.get("MESSAGE_ID") == journal.CRASHED:
            crash = {"type": entry.get("EXCEPTION_TYPE"), "message": entry.get("EXCEPTION_MESSAGE")}
    return {"errors": errors[-limit:], "exception": crash, "start_limit_hit": start_limit}


# --- the alert -----------------------------------------------------------------------------


def build_payload(
    unit: str, stop: Mapping, kind: str, found: Mapping, held_back: int, now: float, host: str
) -> dict:
    """The JSON every channel gets.

    ``kind``: "failed" (systemd restarts it), "down" (it stays failed) or "status" (by hand).
    """
    errors = list(found.get("errors") or [])
    last_error = errors[-1] if errors else ""
    what = describe_end(stop)
    if kind == "failed":
        summary = f"{unit} failed on {host} ({what}); systemd restarts it"
    elif kind == "down" and found.get("start_limit_hit"):
        summary = (
            f"{unit} is down on {host}: systemd gave up restarting it (start limit hit; last run: {what})"
        )
    elif kind == "down":
        summary = (
            f"{unit} failed on {host} ({what}) and stays down: fix the cause, then systemctl start {unit}"
        )
    else:
        summary = f"{unit} on {host}: {stop.get('state', 'unknown')}, last {what}"
    if last_error:
        summary += f": {last_error}"
    if held_back:
        summary += f" [{held_back} earlier failure alert(s) held back by the rate limit]"
    return {
        "unit": unit,
        "host": host,
        "kind": kind,
        "result": stop.get("result"),
        "exit_code": stop.get("exit_code"),
        "exit_status": stop.get("exit_status"),
        "invocation_id": stop.get("invocation_id"),
        "restarts": kind == "failed",
        "start_limit_hit": bool(found.get("start_limit_hit")),
        "time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "last_error": last_error,
        "errors": errors,
        "exception": found.get("exception"),
        "held_back": held_back,
        "journal": _journal_command(unit, stop.get("invocation_id")),
    }


def _journal_command(unit: str, invocation_id: object) -> str:
    """The journalctl command line that shows the run: the service's output and systemd's."""
    if not invocation_id:
        return f"journalctl -u {unit}"
    return f"journalctl _SYSTEMD_INVOCATION_ID={invocation_id} + INVOCATION_ID={invocation_id}"


def deliver(settings: Settings, payload: dict) -> int:
    """Send ``payload`` to every channel, in parallel; returns how many took it."""
    if not settings.channels:
        return 0
    senders: dict[str, Callable[[], None]] = {
        channel.name: _sender(channel, payload, settings.timeout) for channel in settings.channels
    }
    outcomes: dict[str, BaseException | None] = {}

    def attempt(name: str, send: Callable[[], None]) -> None:
        try:
            send()
        except Exception as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None

    # Daemon threads: a channel that hangs past its timeout cannot keep the command alive.
    threads = [threading.Thread(target=attempt, args=item, daemon=True) for item in senders.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + settings.timeout + 2
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    delivered = 0
    for name in senders:
        if name not in outcomes:
            log.error("alert for %s: %s did not finish within %gs", payload["unit"], name, settings.timeout)
        elif outcomes[name] is not None:
            log.error("alert for %s: %s failed: %s", payload["unit"], name, outcomes[name])
        else:
            delivered += 1
            log.info("alert for %s: delivered to %s", payload["unit"], name)
    return delivered


def _sender(channel, payload: dict, timeout: float) -> Callable[[], None]:
    if isinstance(channel, Webhook):
        return lambda: _post(channel, payload, timeout)
    if isinstance(channel, Email):
        return lambda: _mail(channel, payload, timeout)
    return lambda: _command(channel, payload, timeout)


def _post(hook: Webhook, payload: dict, timeout: float) -> None:
    body = slack_payload(payload) if hook.slack else payload
    request = urllib.request.Request(
        hook.url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"airflow-systemd/{__version__}",
            **dict(hook.headers),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code} {exc.reason} from {_safe_url(hook.url)}") from None
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"POST to {_safe_url(hook.url)}: {exc}") from None


def _safe_url(url: str) -> str:
    # A webhook URL's path is often its secret (Slack's are): name the host only.
    return re.sub(r"^(https?://[^/]+).*$", r"\1/...", url)


def slack_payload(payload: dict) -> dict:
    text = payload["summary"]
    if payload["errors"]:
        text += "\n```\n" + "\n".join(payload["errors"]) + "\n```"
    return {"text": text}


def _mail(mail: Email, payload: dict, timeout: float) -> None:
    message = email.message.EmailMessage()
    message["Subject"] = f"[airflow-systemd] {payload['summary']}"[:250]
    message["To"] = ", ".join(mail.to)
    if mail.sender:
        message["From"] = mail.sender
    lines = [payload["summary"], ""]
    lines += [f"{key}: {payload[key]}" for key in ("unit", "host", "result", "exit_code", "exit_status")]
    lines += [f"time: {payload['time']}", f"more: {payload['journal']}", ""]
    if payload["errors"]:
        lines += ["Last error lines:", *(f"  {line}" for line in payload["errors"])]
    message.set_content("\n".join(lines) + "\n")
    _run([mail.sendmail, "-t", "-oi"], message.as_bytes(), timeout)


def _command(command: Command, payload: dict, timeout: float) -> None:
    _run(list(command.argv), json.dumps(payload).encode(), timeout)


def _run(argv: list[str], data: bytes, timeout: float) -> None:
    try:
        result = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"{argv[0]}: {exc}") from None
    if result.returncode != 0:
        last = (result.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
        raise RuntimeError(
            f"{argv[0]} exited with status {result.returncode}" + (f": {last}" if last else "")
        )


# --- the three ways it runs ----------------------------------------------------------------


def alert(
    unit: str,
    environ: Mapping[str, str],
    settings: Settings,
    *,
    systemd: Systemd | None = None,
    state_dir: str = STATE_DIR,
    now: float | None = None,
    dry_run: bool = False,
) -> dict | None:
    """Handle one run of the command; returns the payload if there is one to deliver."""
    systemd = systemd or Systemd()
    now = time.time() if now is None else now
    if "SERVICE_RESULT" in environ:
        return _after_run(unit, environ, settings, systemd, state_dir, now, dry_run)
    if "MONITOR_SERVICE_RESULT" in environ:
        return _unit_failed(unit, environ, settings, systemd, state_dir, now, dry_run)
    return _by_hand(unit, settings, systemd, now, dry_run)


def parse_instance(instance: str) -> tuple[str, dict[str, str]]:
    """The unit, and how its run ended, from ``airflow-alert@``'s instance name.

    ``UNIT:RESULT:EXIT_CODE:EXIT_STATUS:INVOCATION_ID`` (what each unit's ExecStopPost= asks
    for, systemd filling in the variables of systemd.exec(5)) gives those as the variables an
    ExecStopPost= would see; a bare ``UNIT`` (OnFailure=, or by hand) gives none.
    """
    name, *ended = instance.split(":")
    if not ended:
        return unit_name(name), {}
    if len(ended) != 4 or not ended[0]:
        raise ValueError(f"{instance!r}: expected UNIT or UNIT:RESULT:EXIT_CODE:EXIT_STATUS:INVOCATION_ID")
    keys = ("SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS", "INVOCATION_ID")
    return unit_name(name), dict(zip(keys, ended))


def _monitor_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """What systemd gives an OnFailure= unit; an after-run alert comes by its instance name."""
    return {key: value for key, value in environ.items() if key.startswith("MONITOR_")}


def _stop_from(environ, prefix: str = "") -> dict:
    """How the unit's run ended, from ExecStopPost='s variables or, prefixed MONITOR_, from
    those systemd gives an OnFailure= unit."""
    return {
        "result": environ[f"{prefix}SERVICE_RESULT"],
        "exit_code": environ.get(f"{prefix}EXIT_CODE", ""),
        "exit_status": environ.get(f"{prefix}EXIT_STATUS", ""),
        "invocation_id": environ.get(f"{prefix}INVOCATION_ID", ""),
    }


def _after_run(unit, environ, settings, systemd, state_dir, now, dry_run) -> dict | None:
    stop = {**_stop_from(environ), "time": now}
    if stop["result"] == "success":
        restarts = False
    else:
        props = systemd.show(unit, "Restart", "RestartPreventExitStatus", "RestartForceExitStatus")
        # Not knowing, expect a restart: if none comes, the OnFailure= alert still goes out.
        restarts = (
            will_restart(stop["result"], stop["exit_code"], stop["exit_status"], props) if props else True
        )
    stop["restarts"] = restarts
    if dry_run:
        kind = "failed" if restarts else "down"
        return None if stop["result"] == "success" else _payload(unit, stop, kind, 0, settings, systemd, now)
    with locked_state(unit, state_dir) as state:
        previous = state.get("last_stop")
        if not this_boot(previous):
            previous = None
        state["last_stop"] = stop
        if stop["result"] == "success":
            return None
        if not restarts and _alerted_final(state, stop, unit):
            return None
        held_back = admit(state, previous, now, settings, final=not restarts)
        if not restarts:
            state["final_invocation_id"] = stop["invocation_id"]
    if held_back is None:
        log.info(
            "alert for %s held back: %d alerts in the last %gs (max_alerts)",
            unit,
            settings.max_alerts,
            settings.window,
        )
        return None
    return _payload(unit, stop, "failed" if restarts else "down", held_back, settings, systemd, now)


def _unit_failed(unit, environ, settings, systemd, state_dir, now, dry_run) -> dict | None:
    stop = _stop_from(environ, "MONITOR_")
    if stop["result"] == "success":  # an OnSuccess= hook, say
        return None
    if dry_run:
        return _payload(unit, stop, "down", 0, settings, systemd, now)
    with locked_state(unit, state_dir) as state:
        if _alerted_final(state, stop, unit):
            return None
        state["final_invocation_id"] = stop["invocation_id"]
        held_back = admit(state, state.get("last_stop"), now, settings, final=True)
    return _payload(unit, stop, "down", held_back, settings, systemd, now)


def _alerted_final(state: dict, stop: Mapping, unit: str) -> bool:
    """Whether the final failure of this run went out already: systemd starts both the after-run
    and the OnFailure= alert for a failure it does not restart, and either may come first."""
    if stop["invocation_id"] and state.get("final_invocation_id") == stop["invocation_id"]:
        log.info("alert for %s: its failure was alerted already", unit)
        return True
    return False


def _by_hand(unit, settings, systemd, now, dry_run) -> dict:
    props = systemd.show(
        unit, "Result", "ExecMainCode", "ExecMainStatus", "InvocationID", "ActiveState", "SubState"
    )
    code = EXIT_CODES.get(props.get("ExecMainCode", ""), "")
    status = props.get("ExecMainStatus", "")
    if code in ("killed", "dumped") and status.isdigit():
        with contextlib.suppress(ValueError):
            status = signal.Signals(int(status)).name.removeprefix("SIG")
    stop = {
        "result": props.get("Result", ""),
        "exit_code": code,
        "exit_status": status,
        "invocation_id": props.get("InvocationID", ""),
        "state": f"{props.get('ActiveState', 'unknown')}/{props.get('SubState', 'unknown')}",
    }
    return _payload(unit, stop, "status", 0, settings, systemd, now)


def _payload(unit, stop, kind, held_back, settings, systemd, now) -> dict:
    found = evidence(systemd.journal(unit), stop.get("invocation_id", ""), settings.error_lines)
    return build_payload(unit, stop, kind, found, held_back, now, socket.gethostname())


# --- the command ---------------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    journal.setup("alert", native=False)  # short-lived: its stream carries the unit reliably
    try:
        unit, ended = parse_instance(args.unit)
    except ValueError as exc:
        log.error("alert: %s", exc)
        return 0
    settings = Settings()
    try:
        settings = load_config(args.config)
    except ConfigProblem as exc:
        log.error("alert: %s", exc)
    try:
        systemd = Systemd(read_journal=bool(settings.channels) or args.dry_run)
        payload = alert(
            unit,
            ended or _monitor_variables(os.environ),
            settings,
            systemd=systemd,
            state_dir=args.state_dir,
            dry_run=args.dry_run,
        )
        if payload is None:
            return 0
        if args.dry_run:
            json.dump(payload, sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif not settings.channels:
            log.info("alert for %s not sent: no channel configured in %s", unit, args.config)
        else:
            deliver(settings, payload)
    except Exception as exc:  # exit 0 whatever happens: see the module docstring
        log.error("alert for %s failed: %s: %s", unit, type(exc).__name__, exc)
    return 0


ALERT_HELP = f"""\
Alert the configured channels that UNIT failed: its result, exit status and last error
lines from the journal (journalctl -u UNIT -p err), as JSON to webhooks (or a Slack
message), mail through the local sendmail, or commands (JSON on stdin).

The shipped units start it in airflow-alert@.service, as the airflow-alert account:
after every run, as airflow-alert@UNIT:RESULT:EXIT_CODE:EXIT_STATUS:INVOCATION_ID (their
ExecStopPost= fills these in; a run that failed is alerted), and from
OnFailure=airflow-alert@%N.service once the unit has failed for good. At most max_alerts
alerts per unit per window; the first failure after a good run, and a unit that stays
down, always go out. Run by hand with a plain UNIT, it reports the unit's current state
(try your channels with it, as root or airflow-alert; --dry-run prints the payload).

Channels and limits: --config (default {DEFAULT_CONFIG}), documented in the
template install-units writes there. State: {STATE_DIR}.

exit status: always 0, even when a channel fails (that is logged): the alert must never
make a unit loop or change its result.
"""


def register(subparsers) -> None:
    """Add ``alert`` to the ``airflow-systemd`` command."""
    parser = subparsers.add_parser(
        "alert",
        help="alert the configured channels that a unit failed (run by the units themselves)",
        description=ALERT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "unit", metavar="UNIT", help="the unit, e.g. airflow-scheduler.service (or the instance name above)"
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, metavar="PATH", help="channels and limits (default: %(default)s)"
    )
    parser.add_argument(
        "--state-dir", default=STATE_DIR, metavar="DIR", help="rate limits and runs (default: %(default)s)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the payload; deliver nothing, record nothing"
    )
    parser.set_defaults(func=run_command)
