"""A throw-away *real* systemd for system tests, on a host whose PID 1 is not systemd.

Approach (facts measured on Debian 12 / systemd 252 hosts with cgroups in hybrid v1+v2 mode;
docs/harness.md lists them with the pitfalls found along the way):

* The container root is an overlayfs whose lower layer is the host's own ``/`` (so the host's
  Python and virtualenvs are there without copying) and whose upper/work dirs live on a fresh
  tmpfs: every ``up()`` starts pristine and nothing leaks back to the host. ``lower=`` puts
  another root tree there instead, e.g. a clean Debian made with mmdebstrap, on which an
  installed package finds only what it depends on (tests/package). It is never written to.
* Host units we don't want inside (postgresql, timers, getty...) are masked by symlinking them
  to /dev/null in the upper layer; journald is volatile with rate limiting off.
* ``systemd-nspawn --boot`` runs systemd as PID 1 of its own PID namespace.
  ``--register=no --keep-unit`` is what makes nspawn work without a host systemd/machined.
  ``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`` is essential: without it systemd inside runs in cgroup
  v1 mode, gets no cgroup-empty notifications and every stop waits an extra TimeoutStopSec.
* nspawn is started inside a cgroup of our own (in each writable hierarchy) because it leaves
  its payload/supervisor sub-cgroups behind; ``down()`` kills whatever is left there and
  removes them.
* Commands run inside via ``nsenter --all`` into the namespaces of the container's PID 1:
  ``machinectl``, ``systemctl -M`` and ``systemd-run -M`` need machined on the host and do
  NOT work here.
* Files created on the host after boot are not reliably visible through the overlay's lower
  layer, so the repository checkout is bind-mounted at its own path by default.
* The container shares the host network unless ``private_network=True``: mind port clashes.
  With a private network (only a loopback of its own), ``exec(..., host_network=True)`` still
  runs a command with the host's network, e.g. apt fetching from a mirror, and
  :meth:`Sandbox.netns` names the namespace for a host process that must live inside it.
* Measured with this module: ``up()`` 0.3-0.5 s, ``down()`` 0.2-0.5 s (plain nspawn from a shell
  script: 0.5 s / 2 s).

Library use::

    sb = Sandbox(name="afsd")
    sb.up()
    sb.systemctl("start", "foo.service")
    sb.down()

CLI use, from the repository root (as root)::

    python3 -m tests.harness.sandbox up|exec CMD [ARG..]|status|root|logs|down
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "sandbox"
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOTED_STATES = ("running", "degraded")


class SandboxError(RuntimeError):
    """The sandbox could not be started, reached or torn down."""


class CommandFailed(subprocess.CalledProcessError):
    """A command inside the sandbox exited non-zero; the message carries its output."""

    def __str__(self) -> str:
        text = super().__str__()
        for label, out in (("stdout", self.stdout), ("stderr", self.stderr)):
            if out and out.strip():
                text += f"\n--- {label} ---\n{out.rstrip()}"
        return text


def cgroup_hierarchies() -> list[Path]:
    """The cgroup hierarchies in which nspawn's parent cgroup must be created."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # pure cgroup v2 host
        return [root]
    # hybrid/legacy host: systemd's own named v1 hierarchy, plus the v2 one nspawn uses
    # for the container when SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
    return [h for h in (root / "systemd", root / "unified") if (h / "cgroup.procs").exists()]


def _mount_points() -> set[str]:
    with open("/proc/self/mounts") as f:
        return {_unescape_mount_path(line.split()[1]) for line in f}


def _unescape_mount_path(path: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as \ooo (octal)
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), path)


class Sandbox:
    """One systemd-nspawn container booting an overlay of the host root."""

    def __init__(
        self,
        name: str = "afsd",
        binds: Sequence[os.PathLike | str] = (REPO_ROOT,),
        binds_ro: Sequence[os.PathLike | str] = (),
        private_network: bool = False,
        state_dir: os.PathLike | str = DEFAULT_STATE_DIR,
        lower: os.PathLike | str = "/",
    ) -> None:
        self.name = name
        self.lower = str(lower)
        self.binds = tuple(str(p) for p in binds)
        self.binds_ro = tuple(str(p) for p in binds_ro)
        self.private_network = private_network
        self.state = Path(state_dir) / name
        self.mnt = self.state / "mnt"  # tmpfs holding upper/, work/ and the overlay root/
        self.root = self.mnt / "root"
        self.pidfile = self.state / "nspawn.pid"
        self.console_log = self.state / "console.log"
        self._popen: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"Sandbox(name={self.name!r}, root={str(self.root)!r}, lower={self.lower!r})"

    def __enter__(self) -> Sandbox:
        self.up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # ------------------------------------------------------------------ process lookup
    def nspawn_pid(self) -> int | None:
        """PID of our live systemd-nspawn, or None."""
        if self._popen is not None:
            # Started by this object: poll() is exact and reaps the zombie. The pidfile check
            # below is not: /proc/PID/cmdline reads empty while the PID is in execve().
            return self._popen.pid if self._popen.poll() is None else None
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # a zombie has an empty cmdline; a reused PID has a different one
        return pid if f"--machine={self.name}".encode() in cmdline else None

    def leader_pid(self) -> int | None:
        """Host PID of the container's PID 1 (the nspawn child that is PID 1 in its namespace)."""
        nspawn = self.nspawn_pid()
        if nspawn is None:
            return None
        for child in _children(nspawn):
            if _innermost_pid(child) == 1:
                return child
        return None

    def is_running(self) -> bool:
        """True when the container is up and its systemd has finished booting."""
        leader = self.leader_pid()
        if leader is None or not Path(f"/proc/{leader}/root/run/systemd/private").is_socket():
            return False
        try:
            state = self.exec("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
        except (SandboxError, subprocess.TimeoutExpired):
            return False
        return state in BOOTED_STATES

    # ------------------------------------------------------------------ up
    def up(self, timeout: float = 60) -> None:
        """Boot the container (no-op if it is already up) and wait until systemd has booted."""
        if os.geteuid() != 0:
            raise SandboxError("the sandbox needs root (mounts, cgroups, namespaces)")
        if self.nspawn_pid() is None:
            self.down()  # clear leftovers of a crashed earlier run with this name
            self._prepare_root()
            self._start_nspawn()
        self._wait_booted(timeout)

    def _prepare_root(self) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)
        # upper/work must not live on the lower layer's filesystem, and a tmpfs is fresh each time
        _run("mount", "-t", "tmpfs", "-o", "mode=0755,size=50%", f"{self.name}-upper", self.mnt)
        for d in ("upper", "work", "root"):
            (self.mnt / d).mkdir()
        options = f"lowerdir={self.lower},upperdir={self.mnt}/upper,workdir={self.mnt}/work"
        _run("mount", "-t", "overlay", "-o", options, f"{self.name}-root", self.root)

        etc = self.root / "etc"
        # own machine-id: own journal files, and nothing mistakes the container for the host
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        (etc / "hostname").write_text(self.name + "\n")
        units = etc / "systemd" / "system"
        _symlink("/lib/systemd/system/multi-user.target", units / "default.target")
        # run nothing but systemd's own basics and the tests' units
        for unit in self._enabled_host_units(units) | {"console-getty.service"}:
            _symlink("/dev/null", units / unit)
        (etc / "systemd" / "journald.conf.d").mkdir(parents=True, exist_ok=True)
        # volatile: no journal files left on the host's disk; no rate limit: tests log fast
        (etc / "systemd" / "journald.conf.d" / "50-sandbox.conf").write_text(
            "[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\n"
        )

    @staticmethod
    def _enabled_host_units(units: Path) -> set[str]:
        links = [*units.glob("*.wants/*"), *units.glob("*.requires/*")]
        return {link.name for link in links if not link.name.endswith(".target")}

    def _start_nspawn(self) -> None:
        args = [
            "systemd-nspawn",
            f"--directory={self.root}",
            "--boot",
            f"--machine={self.name}",
            "--register=no",  # no machined on the host to register with
            "--keep-unit",  # no host systemd to create a scope for us
            "--link-journal=no",
            "--settings=no",
            "--console=read-only",
        ]
        args += [f"--bind={p}" for p in self.binds]
        args += [f"--bind-ro={p}" for p in self.binds_ro]
        if self.private_network:
            # The host's resolver for exec(host_network=True); the image may have none.
            args += ["--private-network", "--resolv-conf=copy-host"]

        procs_files = []
        for hierarchy in cgroup_hierarchies():
            (hierarchy / self.name).mkdir(exist_ok=True)
            procs_files.append(str(hierarchy / self.name / "cgroup.procs"))
        # The shell joins our cgroups and then exec()s nspawn (same PID), so nspawn's sub-cgroups
        # are created under ours from its first instruction on. Done in a shell rather than a
        # preexec_fn, which is unsafe in a multi-threaded caller.
        join_cgroups_then_exec = 'for f in $SANDBOX_CGROUP_PROCS; do echo $$ >"$f" || exit 1; done; exec "$@"'
        env = {
            **os.environ,
            "SANDBOX_CGROUP_PROCS": " ".join(procs_files),
            "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
        }
        with open(self.console_log, "wb") as console:
            self._popen = subprocess.Popen(
                ["sh", "-c", join_cgroups_then_exec, "sh", *args],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # no SIGINT/SIGHUP from the caller's terminal
            )
        self.pidfile.write_text(f"{self._popen.pid}\n")

    def _wait_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if self.nspawn_pid() is None:
                self._fail_boot("systemd-nspawn exited during boot")
            if time.monotonic() > deadline:
                self._fail_boot(f"boot did not finish within {timeout}s")
            time.sleep(0.05)

    def _fail_boot(self, reason: str) -> NoReturn:
        tail = self.console_tail()
        try:
            self.down()
        except SandboxError as e:
            reason += f" (and then: {e})"
        raise SandboxError(f"sandbox {self.name!r}: {reason}; console:\n{tail}")

    def console_tail(self, lines: int = 30) -> str:
        """The last lines of the container's console (boot messages)."""
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "  (no console log)"
        return "\n".join("  console: " + line for line in text.splitlines()[-lines:]) or "  (console empty)"

    # ------------------------------------------------------------------ commands inside
    def _running_leader(self) -> int:
        leader = self.leader_pid()
        if leader is None:
            raise SandboxError(f"sandbox {self.name!r} is not running")
        return leader

    def netns(self) -> str:
        """The container's network namespace, for ``nsenter --net=`` from the host."""
        return f"/proc/{self._running_leader()}/ns/net"

    def nsenter_argv(
        self, *cmd: str, env: Mapping[str, str] | None = None, host_network: bool = False
    ) -> list[str]:
        """The host command line that runs CMD inside the container with a clean environment.

        ``host_network``: every namespace of the container but its network (nspawn uses no
        user or time namespace here).
        """
        leader = self._running_leader()
        extra_env = [f"{k}={v}" for k, v in (env or {}).items()]
        namespaces = ["--mount", "--uts", "--ipc", "--pid", "--cgroup"] if host_network else ["--all"]
        return [
            "nsenter", f"--target={leader}", *namespaces, "--",
            "env", "-i", "--chdir=/",
            f"PATH={INSIDE_PATH}", "HOME=/root", "LANG=C.UTF-8",
            "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
            *extra_env, *cmd,
        ]  # fmt: skip

    def exec(
        self,
        *cmd: str,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        host_network: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run CMD inside the container; text output is captured."""
        argv = self.nsenter_argv(*cmd, env=env, host_network=host_network)
        # own process group: nsenter forks to enter the PID namespace, and on timeout the
        # command inside must die too, not only nsenter
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        result = subprocess.CompletedProcess(list(cmd), proc.returncode, stdout, stderr)
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, list(cmd), stdout, stderr)
        return result

    def sh(self, script: str, **kwargs) -> subprocess.CompletedProcess:
        """Run a shell script inside the container."""
        return self.exec("sh", "-c", script, **kwargs)

    def systemctl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.exec("systemctl", *args, **kwargs)

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, e.g. show("foo.service", "ActiveState") -> "active"."""
        return self.systemctl("show", "-P", prop, unit).stdout.rstrip("\n")

    def journal(self, unit: str, *args: str) -> str:
        """journalctl output for one unit (this boot); extra args e.g. "-o", "json"."""
        return self.exec("journalctl", "--no-pager", "-b", "-u", unit, *args).stdout

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create or replace a file inside the container (parent dirs are created)."""
        self.exec("install", "-D", "-m", f"{mode:o}", "/dev/stdin", path, input=text)

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    # ------------------------------------------------------------------ down
    def down(self) -> None:
        """Power off and remove every trace (processes, mounts, cgroups). Safe to call anytime."""
        nspawn = self.nspawn_pid()
        if nspawn is not None:
            self._stop_nspawn(nspawn)
        problems = self._kill_cgroup_leftovers()
        for mount_point in (self.root, self.mnt):  # the overlay first: it lives on the tmpfs
            _unmount(mount_point)
        for hierarchy in cgroup_hierarchies():
            try:
                _remove_cgroup_tree(hierarchy / self.name)
            except OSError as e:
                problems.append(f"cannot remove cgroup: {e}")
        # nspawn refuses to rm -rf its (empty) propagation dir when /run is not a tmpfs
        with contextlib.suppress(OSError):
            os.rmdir(f"/run/systemd/nspawn/propagate/{self.name}")
        for leftover in (self.pidfile, self.console_log):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        for d in (self.root, self.mnt, self.state):
            with contextlib.suppress(OSError):  # only empty dirs: anything else there isn't ours
                d.rmdir()
        self._popen = None
        if problems:
            raise SandboxError(f"sandbox {self.name!r} not fully removed: " + "; ".join(problems))

    def _stop_nspawn(self, nspawn: int) -> None:
        # nspawn exits when the container's PID 1 does; poweroff lets units stop in order
        if self._request_poweroff() and self._wait_exit(nspawn, 30):
            return
        os.kill(nspawn, signal.SIGTERM)  # to nspawn: shut the container down
        if self._wait_exit(nspawn, 10):
            return
        os.kill(nspawn, signal.SIGKILL)
        self._wait_exit(nspawn, 5)

    def _request_poweroff(self) -> bool:
        # fails while systemd is still too early in boot to take jobs: then SIGTERM is the way
        try:
            return self.systemctl("poweroff", "--no-block", check=False, timeout=10).returncode == 0
        except (SandboxError, subprocess.TimeoutExpired):
            return False

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn_pid() != pid:
                return True
            time.sleep(0.05)
        return False

    def _kill_cgroup_leftovers(self) -> list[str]:
        # only this container's processes can be in these cgroups
        deadline = time.monotonic() + 5
        while True:
            pids = {pid for h in cgroup_hierarchies() for pid in _cgroup_tree_pids(h / self.name)}
            if not pids:
                return []
            if time.monotonic() > deadline:
                return [f"PIDs {sorted(pids)} survive SIGKILL"]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


# ---------------------------------------------------------------------- helpers
def _run(*argv: object, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SandboxError(f"{' '.join(map(str, argv))} failed: {result.stderr.strip()}")
    return result


def _unmount(path: Path) -> None:
    if str(path) not in _mount_points():
        return
    # lazy unmount as fallback: a busy mount must not keep us from cleaning up
    if _run("umount", path, check=False).returncode != 0:
        _run("umount", "-l", path)


def _symlink(target: str, link: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(target)


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _innermost_pid(pid: int) -> int | None:
    """The PID a process has in its own (innermost) PID namespace."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def _cgroup_tree_pids(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    for procs in cgroup.rglob("cgroup.procs") if cgroup.is_dir() else ():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroup_tree(cgroup: Path, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while cgroup.is_dir():
        # cgroup dirs can only be removed empty, so leaves first
        dirs = sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        try:
            for d in [*dirs, cgroup]:
                os.rmdir(d)
        except OSError as e:
            # EBUSY for a moment after SIGKILL: dying tasks still count as members until released
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------- CLI
def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.harness.sandbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--name", default="afsd", help="machine name, also the cgroup name (default: afsd)")
    parser.add_argument("--bind", action="append", help="host path bind-mounted rw at the same path")
    parser.add_argument("--bind-ro", action="append", default=[], help="same, read-only")
    parser.add_argument("--private-network", action="store_true")
    parser.add_argument("--lower", default="/", help="root tree under the overlay (default: the host's /)")
    parser.add_argument("--timeout", type=float, default=60, help="boot timeout in seconds")
    parser.add_argument("command", choices=("up", "exec", "down", "status", "root", "logs"))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="for exec: CMD [ARG..]")
    opts = parser.parse_args(argv)
    sb = Sandbox(
        name=opts.name,
        binds=opts.bind if opts.bind is not None else (REPO_ROOT,),
        binds_ro=opts.bind_ro,
        private_network=opts.private_network,
        lower=opts.lower,
    )
    try:
        return _run_cli_command(sb, opts)
    except SandboxError as e:
        print(f"sandbox: ERROR: {e}", file=sys.stderr)
        return 1


def _run_cli_command(sb: Sandbox, opts: argparse.Namespace) -> int:
    if opts.command == "up":
        t0 = time.monotonic()
        sb.up(timeout=opts.timeout)
        print(f"sandbox: {sb.name!r} up, leader PID {sb.leader_pid()} ({time.monotonic() - t0:.2f}s)")
    elif opts.command == "exec":
        if not opts.args:
            raise SandboxError("usage: exec CMD [ARG..]")
        # stdin/stdout/stderr and the exit code pass straight through
        return subprocess.run(sb.nsenter_argv(*opts.args)).returncode
    elif opts.command == "down":
        t0 = time.monotonic()
        sb.down()
        print(f"sandbox: {sb.name!r} down ({time.monotonic() - t0:.2f}s)")
    elif opts.command == "status":
        if not sb.is_running():
            print("stopped")
            return 1
        print(f"running (leader PID {sb.leader_pid()})")
    elif opts.command == "root":
        if sb.nspawn_pid() is None:
            raise SandboxError(f"{sb.name!r} is not running")
        print(sb.root)
    elif opts.command == "logs":
        sys.stdout.write(sb.console_log.read_text(errors="replace") if sb.console_log.exists() else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
