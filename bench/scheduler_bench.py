"""Plain `airflow scheduler` beside `airflow-systemd scheduler`: what the wrapper costs, what it buys.

Run from the repository root with the virtualenv under test:

    .venvs/af3/bin/python bench/scheduler_bench.py [--runs N] [--seconds S]

Both commands run from the same venv against the same kind of database: a private PostgreSQL
cluster, a fresh database per scheduler cloned from one migrated template. Each round starts
one of each, one at a time, the other paused (SIGSTOP of its process group) so that they never
share the CPU while measured, then uses the pair for one experiment:

1. start latency (every round): process start -> READY=1 (ours), -> end of the first loop
   iteration (plain; ours too, for reference). Median over all rounds.
2. loop rate (the first N rounds, SCHEDULER_IDLE_SLEEP_TIME=0): iterations per second, the
   two taking short turns in ABBA order so that a drift in the machine's load hits both alike.
3. database stopped: `pg_ctl stop -m immediate`, then time to exit, exit code, and descendants
   still running after the main process exited.
4. database frozen: every PostgreSQL process SIGSTOPped for a while; the last WATCHDOG=1 before
   it (systemd kills WatchdogSec= after that) and whether either exited or logged anything.

Iterations are counted by bench/probe/airflow_local_settings.py, loaded the same way into both.
The machine may be shared: absolute timings are noisy, the ratios and medians less so.
The last line of the output is JSON with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `tests.harness` importable

from tests.harness.airflow_env import airflow_environ  # noqa: E402
from tests.harness.components import TEMPLATE_DB, VENV_BIN  # noqa: E402
from tests.harness.notify_peer import NotifyPeer  # noqa: E402
from tests.harness.pgcluster import PgCluster  # noqa: E402
from tests.harness.processes import alive, descendants  # noqa: E402

PROBE = Path(__file__).resolve().parent / "probe"
RECORD = struct.Struct("=Qdd")  # as written by the probe: iterations, first end, last end

PLAIN, OURS = "plain", "ours"
KINDS = (PLAIN, OURS)
COMMANDS = {PLAIN: "airflow", OURS: "airflow-systemd"}
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

WATCHDOG = 10.0  # seconds: WATCHDOG_USEC given to ours, so the real ping path runs
FREEZE = 30.0  # seconds the database stays frozen
START_TIMEOUT = 120.0  # a loaded 2-core machine can take long to import Airflow
EXIT_TIMEOUT = 30.0  # after the database stopped; plain Airflow may never exit
TURN = 2.0  # seconds per turn in the loop-rate experiment: short turns pair up finely


class BenchError(Exception):
    """Something did not happen in time; carries the scheduler's output tail."""

    def __init__(self, message: str, sched: Scheduler | None = None) -> None:
        if sched is not None:
            message += f"\n--- last lines of the {sched.kind} scheduler's output ---\n"
            message += sched.tail()
        super().__init__(message)


@dataclass
class Scheduler:
    kind: str
    proc: subprocess.Popen
    started: float
    log: Path
    loop_file: Path
    peer: NotifyPeer | None
    seen: set[int] = field(default_factory=set)
    latency: dict[str, float] = field(default_factory=dict)

    def loop(self) -> tuple[int, float, float]:
        """(iterations, end of the first, end of the last), monotonic clock."""
        # A read may overlap the probe's write and mix old and new bytes: read until two agree.
        data = self.loop_file.read_bytes()
        while (again := self.loop_file.read_bytes()) != data:
            data = again
        return RECORD.unpack(data[: RECORD.size])

    def pings(self, after: float = float("-inf")) -> list[float]:
        """When WATCHDOG=1 arrived (monotonic), those later than ``after``."""
        messages = self.peer.with_field("WATCHDOG", "1") if self.peer else []
        return [m.at for m in messages if m.at > after]

    def wait_loop(self, count: int, what: str, timeout: float) -> tuple[int, float, float]:
        """Wait until the loop has ended ``count`` iterations in all."""
        return wait_for(what, self, lambda: (r := self.loop())[0] >= count and r, timeout)

    def cpu(self) -> float:
        """CPU seconds (user + system) the main process, which runs the loop, has used."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def descendants(self) -> set[int]:
        """Descendants now; all ever seen are remembered for the clean-up."""
        now = descendants(self.proc.pid)
        self.seen |= now
        return now

    def pause(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        self.descendants()
        self._signal_group(signal.SIGKILL)  # stopped or not, the whole group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for pid in alive(self.seen):  # anything that left the process group
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.peer:
            self.peer.close()
            self.peer = None


def wait_for(what: str, sched: Scheduler, check: Callable, timeout: float):
    """Poll ``check`` until it returns something true; fail fast if the scheduler exits."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if sched.proc.poll() is not None:
            rc = sched.proc.returncode
            raise BenchError(f"{sched.kind} scheduler exited (rc={rc}) before {what}", sched)
        if time.monotonic() > deadline:
            raise BenchError(f"{sched.kind} scheduler: no {what} within {timeout:g}s", sched)
        time.sleep(0.02)


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", file=sys.stderr, flush=True)


T0 = time.monotonic()


class Bench:
    """Owns the cluster's databases, the temp dir and every scheduler started."""

    def __init__(self, tmp: Path, pg: PgCluster) -> None:
        self.tmp = tmp
        self.pg = pg
        self.started: list[Scheduler] = []

    def environ(self, name: str) -> dict[str, str]:
        env = airflow_environ(self.tmp / name, self.pg.url(name))
        for var in NOTIFY_VARIABLES:  # in case the bench itself runs under systemd
            env.pop(var, None)
        # The probe first (its airflow_local_settings), then the checkout its hook imports from.
        env["PYTHONPATH"] = os.pathsep.join((str(PROBE), str(REPO)))
        return env

    def migrate_template(self) -> None:
        self.pg.sql(f"CREATE DATABASE {TEMPLATE_DB}")
        done = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            env=self.environ(TEMPLATE_DB),
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise BenchError(f"airflow db migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self, kind: str, idle_sleep: float | None = None) -> Scheduler:
        name = f"bench_{kind}_{len(self.started)}"
        self.pg.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
        env = self.environ(name)
        if idle_sleep is not None:
            env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] = str(idle_sleep)
        loop_file = self.tmp / f"{name}.loop"
        loop_file.write_bytes(bytes(RECORD.size))
        env["AFSD_BENCH_LOOP_FILE"] = str(loop_file)
        peer = None
        if kind == OURS:
            peer = NotifyPeer(self.tmp / f"{name}.notify")
            env.update(peer.environ(int(WATCHDOG * 1e6)))
        log = self.tmp / f"{name}.log"
        with log.open("w") as out:
            started = time.monotonic()
            proc = subprocess.Popen(
                [str(VENV_BIN / COMMANDS[kind]), "scheduler"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: pause, resume and kill it whole
            )
        sched = Scheduler(kind, proc, started, log, loop_file, peer)
        self.started.append(sched)
        return sched

    def close(self) -> None:
        for sched in self.started:
            sched.kill()


# --- the experiments ---------------------------------------------------------------------


def first_iteration(sched: Scheduler) -> dict[str, float]:
    """Seconds from process start to the end of the first loop iteration (and READY=1)."""
    times = {}
    if sched.peer:
        ready = wait_for("READY=1", sched, lambda: sched.peer.with_field("READY", "1"), START_TIMEOUT)
        times["ready"] = ready[0].at - sched.started
    _, first, _ = sched.wait_loop(1, "first loop iteration", START_TIMEOUT)
    times["first_iteration"] = first - sched.started
    return times


def start_pair(bench: Bench, round_no: int, idle_sleep: float | None = None) -> dict[str, Scheduler]:
    """Start one of each, one at a time, alternating who goes first; both are left paused."""
    pair = {}
    for kind in KINDS if round_no % 2 == 0 else KINDS[::-1]:
        sched = bench.start(kind, idle_sleep)
        sched.latency = first_iteration(sched)
        sched.pause()  # off the CPU while the other one starts
        pair[kind] = sched
    return pair


def running_again(sched: Scheduler) -> None:
    """Resume, and wait for a whole iteration after the one the pause interrupted."""
    count = sched.loop()[0]
    sched.resume()
    sched.wait_loop(count + 2, "loop iteration after resuming", 60)


def loop_rate(pair: dict[str, Scheduler], seconds: float) -> dict:
    """Iterations, seconds and CPU seconds of each, over ``seconds`` each, in ABBA turns."""
    turns = max(2, 2 * round(seconds / (2 * TURN)))  # even, for the ABBA order
    totals = {kind: {"iterations": 0, "seconds": 0.0, "cpu_seconds": 0.0, "turns": []} for kind in KINDS}
    for turn in range(turns):
        for kind in KINDS if turn % 2 == 0 else KINDS[::-1]:  # A B B A A B B A ...
            sched = pair[kind]
            running_again(sched)
            cpu0, (count0, _, end0) = sched.cpu(), sched.loop()
            time.sleep(seconds / turns)
            cpu1, (count1, _, end1) = sched.cpu(), sched.loop()
            sched.pause()
            # Both ends are iteration ends while it ran: the pause is never counted. The CPU
            # time is read within an iteration of them (and ticks by 10 ms): close enough.
            total = totals[kind]
            total["iterations"] += count1 - count0
            total["seconds"] += end1 - end0
            total["cpu_seconds"] += cpu1 - cpu0
            total["turns"].append((count1 - count0) / (end1 - end0))
    return totals


def pooled(pairs: list[dict]) -> dict:
    """All pairs' loop rates together, and each pair's ratio.

    Two processes of the *same* command already differ by a few percent (hash seeds, memory
    layout, which core): only several pairs of processes average that out.
    """

    def per_second(total):
        return total["iterations"] / total["seconds"]

    result = {}
    for kind in KINDS:
        total = {key: sum(p[kind][key] for p in pairs) for key in ("iterations", "seconds", "cpu_seconds")}
        total["per_second"] = per_second(total)
        # Less exposed to other load than the rate: waiting for a CPU or for PostgreSQL is not in it.
        total["cpu_us_per_iteration"] = 1e6 * total["cpu_seconds"] / total["iterations"]
        result[kind] = total
    plain, ours = result[PLAIN], result[OURS]
    result.update(
        ratio=ours["per_second"] / plain["per_second"],
        us_per_iteration_diff=1e6 / ours["per_second"] - 1e6 / plain["per_second"],
        cpu_us_per_iteration_diff=ours["cpu_us_per_iteration"] - plain["cpu_us_per_iteration"],
        pair_ratios=[per_second(p[OURS]) / per_second(p[PLAIN]) for p in pairs],
        pairs=pairs,
    )
    return result


def database_stopped(pg: PgCluster, pair: dict[str, Scheduler]) -> dict:
    for sched in pair.values():
        running_again(sched)
    before = {kind: sched.descendants() for kind, sched in pair.items()}
    stopped = time.monotonic()
    pg.stop("immediate")
    pg_ctl = time.monotonic() - stopped
    exits = {}
    while len(exits) < len(pair) and time.monotonic() - stopped < EXIT_TIMEOUT:
        for kind, sched in pair.items():
            if kind not in exits and sched.proc.poll() is not None:
                exits[kind] = time.monotonic() - stopped
        time.sleep(0.02)
    time.sleep(1.0)  # let helpers that are already dying finish before counting leftovers
    result = {"pg_ctl_seconds": round(pg_ctl, 3)}
    for kind, sched in pair.items():
        exited = kind in exits
        result[kind] = {
            "exit_seconds": exits.get(kind),
            "rc": sched.proc.returncode,
            "descendants": len(before[kind]),
            # Only meaningful once the main process is gone: until then they are its own.
            "left_running": len(alive(before[kind] | sched.seen)) if exited else None,
        }
    say("restarting PostgreSQL")
    pg.start()
    pg.wait_ready()
    return result


def database_frozen(pg: PgCluster, pair: dict[str, Scheduler], seconds: float) -> dict:
    ours = pair[OURS]
    for sched in pair.values():
        running_again(sched)
    # Steady state first: two pings after resuming. Then freeze 1 s before the next ping is due,
    # so that a ping that ought not to happen would fall well inside the freeze.
    resumed = time.monotonic()
    wait_for("two WATCHDOG=1 after resuming", ours, lambda: len(ours.pings(resumed)) >= 2, 4 * WATCHDOG)
    time.sleep(max(0.0, ours.pings()[-1] + WATCHDOG / 2 - 1.0 - time.monotonic()))
    sizes = {kind: sched.log.stat().st_size for kind, sched in pair.items()}
    counts = {kind: sched.loop()[0] for kind, sched in pair.items()}
    pg.freeze()
    frozen = time.monotonic()
    time.sleep(seconds)
    result = {}
    for kind, sched in pair.items():
        with sched.log.open("rb") as f:
            f.seek(sizes[kind])
            logged = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
        result[kind] = {
            "exited": sched.proc.poll() is not None,
            "rc": sched.proc.returncode,
            "iterations": sched.loop()[0] - counts[kind],
            "lines_logged": len(logged),
            "first_lines_logged": logged[:3],
        }
    at_thaw = {kind: sched.loop()[0] for kind, sched in pair.items()}
    pg.thaw()
    thawed = time.monotonic()
    last = max((t for t in ours.pings() if t <= frozen), default=None)
    result[OURS].update(
        last_ping_seconds=None if last is None else last - frozen,
        # systemd kills WatchdogSec= after the last ping, whenever that was
        watchdog_kill_seconds=None if last is None else last + WATCHDOG - frozen,
        pings_during=len([t for t in ours.pings(frozen) if t <= thawed]),
    )
    # Recovery after the thaw: the loop turns again (and ours pings again).
    for kind, sched in pair.items():
        with contextlib.suppress(BenchError):
            sched.wait_loop(at_thaw[kind] + 1, "loop iteration after the thaw", 2 * WATCHDOG)
        count, _, end = sched.loop()
        result[kind]["resumed_seconds"] = end - thawed if count > at_thaw[kind] else None
    with contextlib.suppress(BenchError):
        wait_for("WATCHDOG=1 after the thaw", ours, lambda: ours.pings(thawed), 2 * WATCHDOG)
    after = ours.pings(thawed)
    result[OURS]["ping_resumed_seconds"] = after[0] - thawed if after else None
    return result


# --- running and reporting ---------------------------------------------------------------


def environment(pg: PgCluster) -> dict:
    postgres = subprocess.run([f"{pg.bindir}/postgres", "--version"], capture_output=True, text=True)
    return {
        "airflow": importlib.metadata.version("apache-airflow"),
        "airflow_systemd": importlib.metadata.version("airflow-systemd"),
        "python": platform.python_version(),
        "postgresql": postgres.stdout.split()[2],  # "postgres (PostgreSQL) 15.8 (Debian ...)"
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def run(bench: Bench, runs: int, seconds: float) -> dict:
    # `runs` pairs measure the loop rate, then one pair per fault experiment; every pair's
    # start counts for the start latency.
    plan = ["loop rate"] * runs + ["database stopped", "database frozen"]
    latency = {"plain_first_iteration": [], "ours_ready": [], "ours_first_iteration": []}
    rates, results = [], {"rounds": len(plan)}
    for round_no, experiment in enumerate(plan):
        say(f"round {round_no + 1}/{len(plan)}: starting both schedulers ({experiment})")
        pair = start_pair(bench, round_no, idle_sleep=0 if experiment == "loop rate" else None)
        latency["plain_first_iteration"].append(pair[PLAIN].latency["first_iteration"])
        latency["ours_ready"].append(pair[OURS].latency["ready"])
        latency["ours_first_iteration"].append(pair[OURS].latency["first_iteration"])
        if experiment == "loop rate":
            say(f"loop rate: {seconds / runs:.3g}s each, in turns of about {TURN:g}s")
            rates.append(loop_rate(pair, seconds / runs))
        elif experiment == "database stopped":
            say("stopping PostgreSQL (immediate)")
            results["database_stopped"] = database_stopped(bench.pg, pair)
        else:
            say(f"freezing PostgreSQL for {FREEZE:g}s")
            results["database_frozen"] = database_frozen(bench.pg, pair, FREEZE)
        for sched in pair.values():
            sched.kill()
    results["loop_rate"] = pooled(rates)
    results["start_latency"] = {
        name: {"median": statistics.median(values), "samples": values} for name, values in latency.items()
    }
    return results


def fmt(value, spec: str = ".2f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def table(results: dict) -> str:
    lat = results["start_latency"]
    rate = results["loop_rate"]
    stop = results["database_stopped"]
    frz = results["database_frozen"]
    plain_lat, ours_lat = lat["plain_first_iteration"]["median"], lat["ours_ready"]["median"]

    def exit_text(r):
        if r["exit_seconds"] is None:
            return f"no exit in {EXIT_TIMEOUT:g}s"
        return f"{r['exit_seconds']:.2f}s rc={r['rc']}"

    def left_text(r):
        return "-" if r["left_running"] is None else f"{r['left_running']} of {r['descendants']}"

    def freeze_text(r):
        return f"rc={r['rc']}" if r["exited"] else "no"

    def samples(name):
        return " ".join(f"{v:.1f}" for v in lat[name]["samples"])

    rows = [
        ("", "plain airflow", "airflow-systemd", "ours/plain"),
        (
            f"start -> first loop end | READY=1 (median of {results['rounds']})",
            fmt(plain_lat, unit="s"),
            fmt(ours_lat, unit="s"),
            fmt(ours_lat / plain_lat, ".3f"),
        ),
        ("  samples (s)", samples("plain_first_iteration"), samples("ours_ready"), ""),
        (
            "  start -> first loop end (median)",
            fmt(plain_lat, unit="s"),
            fmt(lat["ours_first_iteration"]["median"], unit="s"),
            fmt(lat["ours_first_iteration"]["median"] / plain_lat, ".3f"),
        ),
        (
            "loop rate, idle sleep 0 (iterations/s)",
            fmt(rate[PLAIN]["per_second"], ".1f"),
            fmt(rate[OURS]["per_second"], ".1f"),
            fmt(rate["ratio"], ".4f"),
        ),
        (
            f"  each of the {len(rate['pair_ratios'])} pairs of processes",
            "",
            "",
            " ".join(f"{r:.3f}" for r in rate["pair_ratios"]),
        ),
        (
            "  mean time per iteration",
            fmt(1e3 / rate[PLAIN]["per_second"], ".3f", "ms"),
            fmt(1e3 / rate[OURS]["per_second"], ".3f", "ms"),
            fmt(rate["us_per_iteration_diff"], "+.0f", "us"),
        ),
        (
            "  main-process CPU per iteration",
            fmt(rate[PLAIN]["cpu_us_per_iteration"] / 1e3, ".3f", "ms"),
            fmt(rate[OURS]["cpu_us_per_iteration"] / 1e3, ".3f", "ms"),
            fmt(rate["cpu_us_per_iteration_diff"], "+.0f", "us"),
        ),
        ("DB stopped -> process exit", exit_text(stop[PLAIN]), exit_text(stop[OURS]), ""),
        ("  descendants left running after exit", left_text(stop[PLAIN]), left_text(stop[OURS]), ""),
        (f"DB frozen {FREEZE:g}s: exited", freeze_text(frz[PLAIN]), freeze_text(frz[OURS]), ""),
        ("  lines logged while frozen", str(frz[PLAIN]["lines_logged"]), str(frz[OURS]["lines_logged"]), ""),
        ("  loop iterations while frozen", str(frz[PLAIN]["iterations"]), str(frz[OURS]["iterations"]), ""),
        ("  freeze -> last WATCHDOG=1", "-", fmt(frz[OURS]["last_ping_seconds"], "+.2f", "s"), ""),
        (
            f"  freeze -> systemd kill (WatchdogSec={WATCHDOG:g})",
            "never",
            fmt(frz[OURS]["watchdog_kill_seconds"], "+.2f", "s"),
            "",
        ),
        ("  WATCHDOG=1 while frozen", "-", str(frz[OURS]["pings_during"]), ""),
        (
            "  thaw -> loop turns again",
            fmt(frz[PLAIN]["resumed_seconds"], unit="s"),
            fmt(frz[OURS]["resumed_seconds"], unit="s"),
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    for kind in KINDS:
        for line in frz[kind]["first_lines_logged"]:
            lines.append(f"{kind} logged while frozen: {line[:150]}")
    env = results["environment"]
    lines.append(
        f"load average {env['loadavg_start'][0]} at start, {env['loadavg_end'][0]} at end "
        f"({env['cpus']} CPUs): other work on the machine adds noise, see the pairs"
    )
    return "\n".join(lines)


def rounded(value):
    """Floats to 4 decimals, for a JSON line a person can read too."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="pairs of schedulers for the loop rate; with the two fault experiments' pairs, "
        "the start latency is a median over N+2 (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="loop-rate time per command, split over the pairs (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs must be at least 1 and --seconds positive")
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the clean-up below runs.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda received, _: sys.exit(128 + received))

    tmp = Path(tempfile.mkdtemp(prefix="afsd-bench-"))
    pg = PgCluster()
    bench = Bench(tmp, pg)
    try:
        env = environment(pg)
        print(
            f"Airflow {env['airflow']}, airflow-systemd {env['airflow_systemd']}, Python {env['python']}, "
            f"PostgreSQL {env['postgresql']}, {env['cpus']} CPUs, load average {env['loadavg_start']}",
            flush=True,
        )
        say("creating the PostgreSQL cluster and the migrated template database")
        pg.init()
        pg.start()
        bench.migrate_template()
        results = run(bench, args.runs, args.seconds)
        env["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results = {"environment": env, "watchdog_seconds": WATCHDOG, "freeze_seconds": FREEZE, **results}
        print(table(results))
        print(json.dumps(rounded(results)))
        return 0
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.close()
        pg.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
