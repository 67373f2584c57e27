"""A network of the test's own for several machines: each a :class:`Sandbox` with a private
network, joined by a veth pair to a bridge that lives in a network namespace made for the test.

The host's own network namespace gains nothing: no interface (both ends of every veth are
created in their namespaces, the bridge's end with ``ip -n LAB``), no route, no listener. The
addresses (10.88.0.0/24) exist only inside namespaces the test made, so concurrent sessions may
use the same ones; the namespace's name carries the session's PID, so that a later session can
delete the namespace of one that died (:func:`remove_labs_of_dead_sessions`).

Every machine gets an /etc/hosts naming all of them (``a.lab`` and the machine's own name as an
alias): Airflow records a task's host by its FQDN, which is then the ``.lab`` name, and the
API server reaches a worker's log server by it.

    lab = Lab(session_lab_name("afsdlab"))
    lab.create()
    lab.join("a", sandbox_a)          # 10.88.0.1, a.lab
    lab.join("b", sandbox_b)          # 10.88.0.2, b.lab
    lab.write_hosts()
    lab.cut("b"); lab.restore("b")    # the link of b, on the bridge's side
    lab.destroy()

Measured (tests/package/test_hosts.py, 2026-12-02): three machines booted side by side in
0.6 s, joined and named in well under a second; ``ip route`` and /sys/class/net on the host
showed nothing of the lab, and nothing listened there on the ports the machines serve.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.harness.sandbox import Sandbox

SUBNET = "10.88.0"
PREFIX_LENGTH = 24
DOMAIN = "lab"
BRIDGE = "br0"


def session_lab_name(prefix: str) -> str:
    """This session's network namespace name (prefix + the pytest process's PID)."""
    return f"{prefix}{os.getpid()}"


def remove_labs_of_dead_sessions(prefix: str) -> None:
    """Delete the namespaces named ``prefix`` + PID whose pytest has ended (a SIGKILLed session
    never tears down)."""
    for name in _namespaces():
        pid = name[len(prefix) :]
        if name.startswith(prefix) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _ip("netns", "del", name, check=False)


def _namespaces() -> list[str]:
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


class Lab:
    """One bridge in the namespace NAME, and the machines joined to it (see the module)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.machines: dict[str, Sandbox] = {}
        self.addresses: dict[str, str] = {}

    def create(self) -> None:
        self.destroy()  # a leftover of this PID's earlier run
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", self.name, "link", "set", BRIDGE, "up")

    def host_name(self, short: str) -> str:
        return f"{short}.{DOMAIN}"

    def veth(self, short: str) -> str:
        return f"ve-{short}"  # in the lab's namespace, so no clash with anything on the host

    def join(self, short: str, machine: Sandbox) -> str:
        """Give the booted MACHINE an eth0 on the bridge; its address, 10.88.0.N in join order."""
        address = f"{SUBNET}.{len(self.machines) + 1}"
        leader = str(machine.leader_pid())
        # Made inside the lab's namespace, the peer created straight in the machine's: neither
        # end ever exists in the host's namespace.
        _ip("-n", self.name, "link", "add", self.veth(short), "type", "veth", "peer", "name", "eth0",
            "netns", leader)  # fmt: skip
        _ip("-n", self.name, "link", "set", self.veth(short), "master", BRIDGE, "up")
        # The host's ip binary in the machine's network namespace only (a minimal Debian root
        # has no iproute2).
        inside = ["nsenter", f"--net={machine.netns()}", "--", "ip"]
        for args in (
            ["addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "lo", "up"],
        ):
            done = subprocess.run([*inside, *args], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"in {machine.name}: ip {' '.join(args)}: {done.stderr.strip()}")
        self.machines[short] = machine
        self.addresses[short] = address
        return address

    def hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{self.addresses[s]}\t{self.host_name(s)} {m.name}" for s, m in self.machines.items()]
        return "\n".join(lines) + "\n"

    def write_hosts(self) -> None:
        """The same /etc/hosts on every joined machine: each one's name resolves everywhere."""
        text = self.hosts_file()
        for machine in self.machines.values():
            machine.write_file("/etc/hosts", text)

    def cut(self, short: str) -> None:
        """Partition SHORT: its veth on the bridge's side goes down (the machine sees its eth0
        lose carrier; nothing it sends arrives, nothing arrives for it)."""
        _ip("-n", self.name, "link", "set", self.veth(short), "down")

    def restore(self, short: str) -> None:
        _ip("-n", self.name, "link", "set", self.veth(short), "up")

    def pull_the_plug(self, short: str) -> None:
        """Power SHORT off at once: SIGKILL to its systemd (PID 1 of its PID namespace), and the
        kernel kills every process in it; nothing inside gets to stop or say goodbye. Its
        network namespace, and with it both ends of its veth, go with the last process.
        ``Sandbox.down()`` then removes what is left on the host."""
        leader = self.machines[short].leader_pid()
        if leader is not None:
            os.kill(leader, signal.SIGKILL)

    def destroy(self) -> None:
        """Delete the namespace (the bridge and the veths' lab ends go with it). Safe anytime."""
        if self.name in _namespaces():
            _ip("netns", "del", self.name)
