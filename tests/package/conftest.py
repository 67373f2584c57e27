"""Package tests: the .deb built from this tree, installed on a clean Debian 12 under systemd."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import package_artifacts as artifacts
from tests.harness.sandbox import Sandbox
from tests.harness.sessions import remove_sandboxes_of_dead_sessions, session_sandbox

NAME_PREFIX = "afsdpkg"
# Higher than any version debian/changelog has: the package the upgrade tests install.
UPGRADE_VERSION_SUFFIX = "+upgradetest1"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "package tests need root (dpkg-buildpackage's installs, mmdebstrap, systemd-nspawn)"
    for tool in ("dpkg-buildpackage", "mmdebstrap", "lintian", "systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not found: run scripts/bootstrap (it installs the build dependencies)"
    return None


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """This session's directory for the packages and the Debian root, removed at its end."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)  # CI counts a skip as a failure
    # machines and work directories of sessions that died without cleaning up
    remove_sandboxes_of_dead_sessions(NAME_PREFIX)
    artifacts.remove_workdirs_of_dead_sessions()
    path = artifacts.STATE / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def debs(workdir: Path) -> tuple[Path, Path]:
    return artifacts.build_debs(workdir, UPGRADE_VERSION_SUFFIX)


@pytest.fixture(scope="session")
def deb(debs) -> Path:
    return debs[0]


@pytest.fixture(scope="session")
def upgrade_deb(debs) -> Path:
    return debs[1]


@pytest.fixture(scope="session")
def debian_root(workdir: Path) -> Path:
    return artifacts.debian_root(workdir)


@pytest.fixture(scope="session")
def machine(deb: Path, upgrade_deb: Path, debian_root: Path) -> Iterator[Sandbox]:
    """A clean Debian 12 booted with systemd, the two packages' directories mounted read-only.

    Its network is private: the services bind their shipped default ports (API server 8080,
    log servers 8793/8794) on a loopback of its own, never on the host's. apt runs with the
    host's network to fetch the Depends from Debian's mirror (test_package.apt).
    """
    sb = session_sandbox(
        NAME_PREFIX,
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
