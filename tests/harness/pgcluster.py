"""A private PostgreSQL cluster for tests, from Debian's postgresql binaries.

Private so a test may stop it, or freeze it (SIGSTOP the postmaster and every backend: the
kernel still accepts connections and ACKs data, so clients hang instead of failing -- the
case the watchdog exists for), without touching any other PostgreSQL on the machine.
PostgreSQL refuses to run as root, so its processes run as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

RUN_AS = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return os.path.dirname(found[-1])


class PgCluster:
    def __init__(self, base: Path | None = None, port: int | None = None, netns: str | None = None) -> None:
        # Its own directory under /tmp: pytest's tmp dirs are root-only (0700), and the
        # server runs as `postgres`, which must reach its data directory.
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="afsd-pg-"))
        self.data = self.base / "data"
        self.port = port or free_port()
        self.bindir = _bindir()
        # A network namespace to serve in (a container's, see Sandbox.netns), so that its
        # 127.0.0.1 is the one the container's services connect to.
        self.netns = netns

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        in_netns = ["nsenter", f"--net={self.netns}", "--"] if self.netns else []
        as_user = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*in_netns, *as_user, *cmd], capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def init(self) -> PgCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            shutil.chown(self.base, user.pw_uid, user.pw_gid)
        self._run(
            f"{self.bindir}/initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self) -> None:
        # fsync off: a test cluster trades durability for speed.
        opts = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            f"{self.bindir}/pg_ctl",
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def stop(self, mode: str = "fast") -> None:
        self.thaw()
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self._postmaster() is not None

    def _postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def _processes(self) -> list[psutil.Process]:
        master = self._postmaster()
        return [master, *master.children(recursive=True)] if master else []

    def freeze(self) -> None:
        for proc in self._processes():
            with contextlib.suppress(psutil.Error):  # a backend that just ended
                proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for proc in reversed(self._processes()):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)

    def url(self, db: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, db: str = "postgres") -> str:
        out = self._run(
            f"{self.bindir}/psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        )
        return out.stdout.strip()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (
            self._run(
                f"{self.bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not become ready")
            time.sleep(0.1)
