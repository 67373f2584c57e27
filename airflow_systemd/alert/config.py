"""alert.conf: the channels and the rate limit, parsed into :class:`Settings`.

``alert.conf`` next to the units documents every key; a problem is reported as a
:class:`ConfigProblem` whose message says what to fix.
"""

from __future__ import annotations

import configparser
import dataclasses
import re
import shlex


class ConfigProblem(Exception):
    """alert.conf cannot be used as it is; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Webhook:
    """An HTTP POST of the JSON payload (``slack``: Slack's ``{"text": ...}`` instead)."""

    name: str
    url: str
    slack: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Email:
    """Mail through the local sendmail."""

    name: str
    to: tuple[str, ...]
    sender: str | None = None
    sendmail: str = "/usr/sbin/sendmail"


@dataclasses.dataclass(frozen=True)
class Command:
    """Any command, with the JSON payload on its stdin."""

    name: str
    argv: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The rate limit (``max_alerts`` per ``window``), incidents (failures with one cause within
    ``incident_window``, alerted ``incident_wait`` after the first; a window of 0 turns them off),
    each channel's ``timeout``, and the channels; no channel means nothing is sent (the runs are
    still recorded)."""

    max_alerts: int = 3
    window: float = 3600.0
    timeout: float = 10.0
    error_lines: int = 10
    incident_window: float = 600.0
    incident_wait: float = 20.0
    channels: tuple = ()


MAX_INCIDENT_WAIT = 30.0  # plus the channels' timeout, within airflow-alert@'s TimeoutStartSec=60s
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*$")
_UNITS = {None: 1, "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
_KEYS = {
    "alert": {"max_alerts", "window", "timeout", "error_lines", "incident_window", "incident_wait"},
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
    for key in ("window", "timeout", "incident_window", "incident_wait"):
        if key in options:
            values[key] = parse_duration(options[key], f"{where} {key}")
    if values.get("incident_wait", 0) > MAX_INCIDENT_WAIT:
        raise ConfigProblem(
            f"{where}: incident_wait must be at most {MAX_INCIDENT_WAIT:g}s "
            "(it and the channels' timeout fit in the alert unit's TimeoutStartSec=60s)"
        )
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
