"""The exit contract, on real processes: no Airflow needed to prove it."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from airflow_systemd.lifecycle import ConfigError, is_config_error
from tests.harness.notify_peer import NotifyPeer
from tests.harness.processes import alive

# A component that starts a SIGTERM-ignoring child and a setsid'd, double-forked grandchild,
# reports their PIDs, then does what MODE says.
COMPONENT = textwrap.dedent(
    """
    import json, multiprocessing, os, signal, subprocess, sys, time
    from airflow_systemd import lifecycle

    STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    GRANDCHILD = ("import os, time\\nif os.fork(): os._exit(0)\\nos.setsid()\\n"
                  "os.write(1, str(os.getpid()).encode()); os.close(1); time.sleep(600)")

    def idle():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)

    def main(life):
        mode = sys.argv[1]
        child = subprocess.Popen([sys.executable, "-c", STUBBORN])
        grandchild = int(subprocess.run([sys.executable, "-c", GRANDCHILD], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, check=True).stdout)
        worker = multiprocessing.Process(target=idle, daemon=True)  # the #32706 trap
        worker.start()
        with open(sys.argv[2], "w") as f:
            json.dump([child.pid, grandchild, worker.pid], f)
        if mode == "crash":
            raise RuntimeError("boom")
        if mode == "config":
            raise lifecycle.ConfigError("bad option: fix it")
        if mode == "wait":
            life.ready("ok")
            time.sleep(600)
        if mode == "slow-stop":  # like Airflow's executor.end(): handles SIGTERM, keeps waiting
            signal.signal(signal.SIGTERM, lambda signum, frame: life.stop_requested(signum))
            life.ready("ok")
            time.sleep(600)

    lifecycle.run("test-component", main, stop_timeout=float(sys.argv[3]))
    """
)


@pytest.fixture
def component(tmp_path):
    script = tmp_path / "component.py"
    script.write_text(COMPONENT)
    peer = NotifyPeer(tmp_path / "notify")
    procs = []

    def start(mode, stop_timeout=2.0):
        pids = tmp_path / f"{mode}.json"
        env = {**os.environ, **peer.environ(), "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen(
            [sys.executable, str(script), mode, str(pids), str(stop_timeout)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc, pids, peer

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    peer.close()


def wait_file(path, timeout=20):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_crash_exits_1_promptly_and_leaves_no_descendant(component):
    proc, pids, peer = component("crash")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "RuntimeError: boom" in err and "Traceback" in err
    assert not alive(wait_file(pids))
    assert peer.with_field("STATUS")[-1].fields["STATUS"] == "failed: RuntimeError: boom"


def test_config_error_exits_78_with_one_line_and_no_traceback(component):
    proc, pids, _ = component("config")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 78
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert errors == ["airflow-systemd test-component: configuration error: bad option: fix it"]
    assert "Traceback" not in err
    assert not alive(wait_file(pids))


def test_sigterm_stops_with_stopping_and_exit_0(component):
    proc, pids, peer = component("wait")
    peer.wait_for("READY", timeout=20)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert peer.with_field("STOPPING", "1")
    assert not alive(wait_file(pids))


def test_graceful_stop_is_bounded_by_the_stop_timeout(tmp_path, component):
    """A component that ignores the stop request still ends, exit 0, after --stop-timeout."""
    proc, pids, peer = component("slow-stop", stop_timeout=1.0)
    peer.wait_for("READY", timeout=20)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert 1.0 <= time.monotonic() - t0 < 10
    assert "graceful stop took longer than 1s" in err
    assert peer.with_field("STOPPING", "1")
    assert not alive(wait_file(pids))


def test_is_config_error_follows_the_cause_chain():
    class AirflowConfigException(Exception):
        pass

    try:
        try:
            raise AirflowConfigException("bad value")
        except AirflowConfigException as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert is_config_error(wrapped)
    assert is_config_error(ConfigError("x"))
    assert not is_config_error(RuntimeError("x"))
