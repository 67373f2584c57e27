"""Redis for tests, from Debian's redis-server package, never installed on the host.

* :class:`RedisServer`: a private server of the test's own (integration tier), run from the
  binaries scripts/bootstrap extracted from Debian's .debs into .cache/redis-root, with the
  libraries extracted beside them (LD_LIBRARY_PATH). Private so that a test may stop, restart
  or freeze it (SIGSTOP: the kernel still accepts connections and buffers what clients send,
  so they hang instead of failing, the case the worker's watchdog exists for) without
  touching any other Redis. Loopback only, a free port, a temporary directory, no persistence
  unless asked for.
* :class:`SandboxRedis`: Debian's packages installed with dpkg inside a sandbox's container
  (system tier), from the same cached .debs (offline), so that the container runs Debian's
  own redis-server.service, as an operator's host would.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from tests.harness.pgcluster import free_port
from tests.harness.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
DEBS = REPO / ".cache" / "debs"  # written by scripts/bootstrap
ROOT = REPO / ".cache" / "redis-root"
PACKAGES = ("redis-server", "redis-tools", "liblzf1", "libjemalloc2")
PING = b"*1\r\n$4\r\nPING\r\n"


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING there within ``timeout`` (stdlib only, so that
    the Airflow 2 virtualenvs, which have no redis-py, can use it too)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(PING)
            return s.recv(64).startswith(b"+PONG")
    except OSError:  # refused, reset, or timed out: a frozen server accepts but never answers
        return False


def _binary() -> tuple[Path, Path]:
    server = ROOT / "usr" / "bin" / "redis-server"
    libdirs = sorted((ROOT / "usr" / "lib").glob("*-linux-gnu"))
    if not server.exists() or not libdirs:
        raise RuntimeError(f"Redis binaries not found in {ROOT}: run scripts/bootstrap")
    return server, libdirs[0]


class RedisServer:
    """One redis-server on 127.0.0.1, its files in a temporary directory; see the module."""

    def __init__(self, port: int | None = None, persistent: bool = False, base: Path | None = None) -> None:
        self.server, self.libdir = _binary()
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="afsd-redis-"))
        self.port = port or free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _config(self) -> str:
        # persistent: every write in the append-only file, so that what a test queued survives
        # stop()/start() and restart(); otherwise nothing on disk, as a broker test needs.
        storage = "appendonly yes\nappendfsync everysec\n" if self.persistent else 'appendonly no\nsave ""\n'
        return (
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\n"
            f"daemonize no\nsupervised no\ndir {self.base}\nlogfile {self.base}/redis.log\n{storage}"
        )

    def start(self, timeout: float = 10) -> None:
        """Start it (same port every time) and wait until it answers PING."""
        if self.running():
            return
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "redis.conf"
        conf.write_text(self._config())
        # setpriv --pdeathsig: the kernel kills the server when the thread that started it
        # ends, even by SIGKILL, when no clean-up code runs: a test never leaves a Redis behind.
        self.proc = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", str(self.server), str(conf)],
            env={"LD_LIBRARY_PATH": str(self.libdir)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no SIGINT from the caller's terminal
        )
        deadline = time.monotonic() + timeout
        while not ping("127.0.0.1", self.port, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _processes(self) -> list[psutil.Process]:
        """The server and its children (a BGSAVE or AOF rewrite runs in a fork)."""
        if not self.running():
            return []
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(self.proc.pid)
            return [server, *server.children(recursive=True)]
        return []

    def pids(self) -> set[int]:
        return {p.pid for p in self._processes()}

    def _signal(self, sig: int) -> None:
        for proc in self._processes():
            with contextlib.suppress(psutil.Error):  # psutil refuses a PID reused meanwhile
                proc.send_signal(sig)

    def freeze(self, timeout: float = 10) -> None:
        """SIGSTOP the server, and return once the kernel has stopped it: the signal is
        delivered asynchronously, and a test that acts at once must find it frozen."""
        self._signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while any(_status(p) not in _STOPPED for p in self._processes()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not stop within {timeout:g}s of SIGSTOP")
            time.sleep(0.02)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (Redis saves first when persistent), SIGKILL after ``timeout``; then reaped."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            children = self._processes()[1:]
            self.thaw()  # a frozen server would never see the SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for child in children:  # a fork that outlived the server (it normally ends with it)
                with contextlib.suppress(psutil.Error):
                    child.kill()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.base / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class SandboxRedis:
    """Debian's redis-server installed and started inside a sandbox's container.

    dpkg installs the cached .debs there (the checkout is bind-mounted at its own path) with
    starting services forbidden (policy-rc.d), so that nothing listens before the
    configuration below is in place; then systemd starts Debian's own redis-server.service.

    Debian's configuration stays as shipped (RDB snapshots, the hardened unit), but for its
    address: a container that shares the host's network namespace (the system tier's) would
    otherwise put a listener on the host's 127.0.0.1:6379 and ::1:6379, clashing with any
    Redis of the host. There it listens on 127.0.0.1 only, on a free port, which the host's
    processes can reach like the tier's PostgreSQL, over the same TCP transport and URL form
    as the documented default. A container with a network of its own keeps port 6379.
    """

    unit = "redis-server.service"
    conf = "/etc/redis/redis.conf"

    def __init__(self, sb: Sandbox, port: int | None = None) -> None:
        self.sb = sb
        self.port = port or (6379 if sb.private_network else free_port())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def install(self, timeout: float = 30) -> None:
        """Install (once per container), configure, and (re)start it; wait until it answers."""
        if self.sb.exec("dpkg-query", "-W", "-f=${Status}", "redis-server", check=False).stdout != (
            "install ok installed"
        ):
            debs = [str(next(DEBS.glob(f"{package}_*.deb"), "")) for package in PACKAGES]
            if not all(debs):
                raise RuntimeError(f"Redis .debs not found in {DEBS}: run scripts/bootstrap")
            self.sb.exec(
                "sh",
                "-c",
                # Any policy-rc.d of the host's root is put back afterwards.
                "set -e; p=/usr/sbin/policy-rc.d; [ ! -e $p ] || cp -p $p $p.afsd-saved\n"
                "trap 'if [ -e $p.afsd-saved ]; then mv $p.afsd-saved $p; else rm -f $p; fi' EXIT\n"
                "printf '#!/bin/sh\\nexit 101\\n' >$p; chmod 0755 $p\n"
                'DEBIAN_FRONTEND=noninteractive dpkg -i "$@" >/dev/null\n',
                "sh",
                *debs,
                timeout=120,
            )
        if not self.sb.private_network:
            self.sb.sh(
                f"sed -i '/^# tests\\/harness\\/redis.py/,$d' {self.conf}\n"
                f"printf '# tests/harness/redis.py: the host network namespace: loopback, a free port\\n"
                f"bind 127.0.0.1\\nport {self.port}\\n' >>{self.conf}"
            )
        self.restart(timeout)

    def ping(self, timeout: float = 2) -> bool:
        """True when it answers PING within ``timeout`` (asked from inside the container)."""
        argv = ("timeout", str(timeout), "redis-cli", "-p", str(self.port), "ping")
        done = self.sb.exec(*argv, check=False, timeout=timeout + 10)
        return done.stdout.strip() == "PONG"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline:
                journal = self.sb.journal(self.unit, "-n", "20")
                raise RuntimeError(f"{self.unit} does not answer on port {self.port}:\n{journal}")
            time.sleep(0.1)

    def main_pid(self) -> int:
        return int(self.sb.show(self.unit, "MainPID"))

    def freeze(self) -> None:
        """SIGSTOP every process of the unit (systemd does not notice: no watchdog there)."""
        self.sb.systemctl("kill", "--signal=SIGSTOP", self.unit)

    def thaw(self) -> None:
        self.sb.systemctl("kill", "--signal=SIGCONT", self.unit)

    def stop(self) -> None:
        self.thaw()  # a frozen server would never see the SIGTERM
        self.sb.systemctl("stop", self.unit)

    def start(self, timeout: float = 30) -> None:
        self.sb.systemctl("start", self.unit)
        self.wait_ready(timeout)

    def restart(self, timeout: float = 30) -> None:
        self.thaw()
        self.sb.systemctl("restart", self.unit)
        self.wait_ready(timeout)


_STOPPED = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}


def _status(proc: psutil.Process) -> str:
    try:
        return proc.status()
    except psutil.Error:  # gone meanwhile: nothing left to stop
        return psutil.STATUS_DEAD
