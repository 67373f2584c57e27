"""Package tests: the .deb built from this tree on each Debian release it is built for (Debian 12
bookworm, Debian 13 trixie), each installed on a clean root of its release under systemd."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import package_artifacts as artifacts
from tests.harness.sandbox import Sandbox
from tests.harness.sessions import remove_sandboxes_of_dead_sessions, session_sandbox

NAME_PREFIX = "afsdpkg"
# Higher than any version debian/changelog has: the package the upgrade tests install.
UPGRADE_VERSION_SUFFIX = "+upgradetest1"


def machine_prefix(suite: str) -> str:
    return f"{NAME_PREFIX}{suite[:3]}"  # + the session's PID (sessions.session_sandbox)


def _release(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("suite") if callspec else None


@pytest.hookimpl(trylast=True)  # after pytest has grouped the items by release
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The three-host test (test_hosts.py, Debian 12 only) last in the Debian 12 lane: after the
    one machine's tests and piuparts, so that its three machines do not run beside them; before
    the next release's tests when the session has them."""
    hosts = [item for item in items if item.path.name == "test_hosts.py"]
    if not hosts:
        return
    rest = [item for item in items if item.path.name != "test_hosts.py"]
    last = max((n for n, item in enumerate(rest) if _release(item) == "bookworm"), default=-1)
    later = (n for n in range(last + 1, len(rest)) if _release(rest[n]) not in (None, "bookworm"))
    at = next(later, len(rest))
    items[:] = rest[:at] + hosts + rest[at:]


def pytest_terminal_summary(terminalreporter) -> None:
    """The three-host test's figures, where CI keeps them (its prints are captured)."""
    module = sys.modules.get("tests.package.test_hosts")
    figures = getattr(module, "FIGURES", ())
    if figures:
        terminalreporter.write_sep("-", "three hosts: figures")
        for text in figures:
            terminalreporter.write_line(text)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "package tests need root (mmdebstrap, chroot, systemd-nspawn)"
    for tool in ("mmdebstrap", "piuparts", "dpkg-scanpackages", "systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not found: run scripts/bootstrap"
    return None


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """This session's directory for the packages and the Debian roots, removed at its end."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)  # CI counts a skip as a failure
    # machines and work directories of sessions that died without cleaning up
    for suite in artifacts.SUITES:
        remove_sandboxes_of_dead_sessions(machine_prefix(suite))
    artifacts.remove_workdirs_of_dead_sessions()
    path = artifacts.STATE / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def background() -> Iterator[ThreadPoolExecutor]:
    """Threads for what mostly waits on other processes: the builds of the releases side by
    side, and piuparts while the machine tests run."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


@pytest.fixture(scope="session")
def builds(request, workdir: Path, background) -> dict[str, Future]:
    """The package and upgrade package of every release this session tests (``-k trixie``:
    that one alone), built side by side (each in a root of its own: mostly downloads, compiles
    and compression, on different files); a release's tests wait for its own build only."""
    selected = {
        item.callspec.params["suite"]
        for item in request.session.items
        if hasattr(item, "callspec") and "suite" in item.callspec.params
    }
    return {
        suite: background.submit(artifacts.build_debs, workdir, suite, UPGRADE_VERSION_SUFFIX)
        for suite in artifacts.SUITES
        if suite in selected
    }


@pytest.fixture(scope="session", params=list(artifacts.SUITES))
def suite(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def deb(builds, suite) -> Path:
    return builds[suite].result()[0]


@pytest.fixture(scope="session")
def upgrade_deb(builds, suite) -> Path:
    return builds[suite].result()[1]


@pytest.fixture(scope="session")
def piuparts_run(workdir: Path, background, suite, deb, upgrade_deb) -> Future:
    """piuparts on the upgrade package, from the package as the previous version, started in
    the background as soon as they are built: test_piuparts waits for it."""
    return background.submit(artifacts.piuparts, workdir, suite, upgrade_deb, deb)


@pytest.fixture(scope="session")
def debian_root(workdir: Path, suite) -> Path:
    return artifacts.debian_root(workdir, suite)


@pytest.fixture(scope="session")
def machine(suite, deb: Path, upgrade_deb: Path, debian_root: Path, piuparts_run) -> Iterator[Sandbox]:
    """A clean root of the release booted with systemd, the two packages' directories mounted
    read-only (and piuparts started on them beside it).

    Its network is private: the services bind their shipped default ports (API server 8080,
    log servers 8793/8794) on a loopback of its own, never on the host's. apt runs with the
    host's network to fetch the Depends from Debian's mirror (test_package.apt).
    """
    sb = session_sandbox(
        machine_prefix(suite),
        lower=debian_root,
        binds=(),
        binds_ro=(deb.parent, upgrade_deb.parent),
        private_network=True,
    )
    try:
        sb.up()
        yield sb
    finally:
        sb.down()
