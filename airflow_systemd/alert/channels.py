"""Delivering an alert: every channel in parallel, each within the timeout.

A webhook gets an HTTP POST of the JSON payload (or Slack's message), mail goes through the
local sendmail, a command gets the JSON on its stdin. A channel that fails is logged and
does not keep the others from their alert.
"""

from __future__ import annotations

import email.message
import json
import logging
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from airflow_systemd import __version__
from airflow_systemd.alert.config import Command, Email, Settings, Webhook
from airflow_systemd.alert.payload import slack_payload

log = logging.getLogger("airflow_systemd")


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
