"""The sandbox gives a REAL systemd: readiness, watchdog and journal behave as on a real host.

Each test asserts something a fake (a plain process runner, Type=simple semantics, a missing
journal) would get wrong, so these tests can fail.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.harness.sandbox import CommandFailed, Sandbox

SCRIPTS = "/run/afsd-test"

# Speaks sd_notify(3) directly (no libraries): one datagram to $NOTIFY_SOCKET.
READY_AFTER_1S = """\
import os, socket, time

time.sleep(1)
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):  # abstract namespace
    addr = "\\0" + addr[1:]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendto(b"READY=1", addr)
while True:
    time.sleep(3600)
"""


class Units:
    """Installs units for one test and removes them afterwards (the container is shared)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.names: list[str] = []

    def install(self, name: str, service_section: str) -> str:
        self.sandbox.write_file(f"/etc/systemd/system/{name}", f"[Service]\n{service_section}")
        self.sandbox.daemon_reload()
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        if not self.names:
            return
        self.sandbox.systemctl("stop", *self.names, check=False, timeout=30)
        self.sandbox.systemctl("reset-failed", *self.names, check=False)
        self.sandbox.exec("rm", "-f", *(f"/etc/systemd/system/{n}" for n in self.names))
        self.sandbox.daemon_reload()


@pytest.fixture
def units(sandbox: Sandbox) -> Iterator[Units]:
    installed = Units(sandbox)
    yield installed
    installed.remove_all()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def test_pid1_is_systemd(sandbox: Sandbox) -> None:
    assert sandbox.exec("cat", "/proc/1/comm").stdout.strip() == "systemd"
    assert sandbox.systemctl("is-system-running", check=False).stdout.strip() in ("running", "degraded")


def test_exec_propagates_exit_code_and_output(sandbox: Sandbox) -> None:
    result = sandbox.sh("echo out; echo err >&2; exit 3", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(CommandFailed, match="err"):
        sandbox.sh("echo err >&2; exit 1")


def test_notify_start_blocks_until_ready(sandbox: Sandbox, units: Units) -> None:
    sandbox.write_file(f"{SCRIPTS}/ready_after_1s.py", READY_AFTER_1S)
    unit = units.install(
        "afsd-test-notify.service",
        f"Type=notify\nExecStart=/usr/bin/python3 {SCRIPTS}/ready_after_1s.py\nTimeoutStartSec=15\n",
    )

    started = time.monotonic()
    sandbox.systemctl("start", unit, timeout=30)
    elapsed = time.monotonic() - started

    assert elapsed >= 1.0, f"systemctl start returned after {elapsed:.2f}s, before READY=1"
    assert (sandbox.show(unit, "ActiveState"), sandbox.show(unit, "SubState")) == ("active", "running")


def test_watchdog_kills_a_service_that_never_pings(sandbox: Sandbox, units: Units) -> None:
    # Restart=no keeps Result=watchdog (it resets after RestartSec otherwise); the SIGABRT
    # must not write a core through the host's core_pattern
    unit = units.install(
        "afsd-test-watchdog.service",
        "ExecStart=/bin/sleep infinity\nWatchdogSec=2\nRestart=no\nLimitCORE=0\n",
    )

    sandbox.systemctl("start", unit)
    started = time.monotonic()
    assert sandbox.show(unit, "ActiveState") == "active"

    assert wait_for(lambda: sandbox.show(unit, "Result") == "watchdog", timeout=10), (
        f"no watchdog kill; {sandbox.systemctl('status', unit, check=False).stdout}"
    )
    killed_after = time.monotonic() - started
    assert killed_after >= 1.5, f"killed after {killed_after:.2f}s, before WatchdogSec=2"
    assert sandbox.show(unit, "ActiveState") == "failed"
    assert sandbox.show(unit, "ExecMainStatus") == "6"  # SIGABRT
    assert "Watchdog timeout" in sandbox.journal(unit, "-o", "cat")


def test_journal_has_service_stdout_with_unit_field(sandbox: Sandbox, units: Units) -> None:
    token = f"afsd-journal-{uuid.uuid4().hex}"
    unit = units.install("afsd-test-journal.service", f"Type=oneshot\nExecStart=/bin/echo {token}\n")

    sandbox.systemctl("start", unit)

    def entry_with_token() -> dict | None:
        entries = (json.loads(line) for line in sandbox.journal(unit, "-o", "json").splitlines())
        return next((e for e in entries if e.get("MESSAGE") == token), None)

    assert wait_for(entry_with_token, timeout=5), sandbox.journal(unit)
    entry = entry_with_token()
    assert entry["_SYSTEMD_UNIT"] == unit
    assert entry["_TRANSPORT"] == "stdout"


def test_private_network_keeps_ports_off_the_host_and_host_network_reaches_out() -> None:
    # What the package tier relies on: services bind their shipped ports on a loopback of the
    # container's own, while apt (exec with host_network=True) still reaches the mirror.
    from tests.harness.pgcluster import free_port

    port = free_port()
    listen = f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(60)"
    probe = (
        "import socket, sys\n"
        "try: socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2).close()\n"
        "except OSError: sys.exit(1)\n"
    )
    sb = Sandbox(name=f"afsdnet{uuid.uuid4().hex[:6]}", private_network=True)
    try:
        sb.up()
        sb.exec("systemd-run", "--unit=listener.service", "python3", "-c", listen)
        deadline = time.monotonic() + 10
        while (
            sb.exec("python3", "-c", probe, str(port), check=False).returncode and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert sb.exec("python3", "-c", probe, str(port), check=False).returncode == 0, "not listening inside"
        assert sb.exec("python3", "-c", probe, str(port), check=False, host_network=True).returncode == 1
        with pytest.raises(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # /proc/net is the reader's namespace (sysfs would show the mounter's)
        links = sb.exec("cat", "/proc/net/dev", host_network=True).stdout.splitlines()[2:]
        inside = sb.exec("cat", "/proc/net/dev").stdout.splitlines()[2:]
        assert [line.split(":")[0].strip() for line in inside] == ["lo"], inside
        assert len(links) > 1, links  # the host's interfaces, not only a loopback
    finally:
        sb.down()
