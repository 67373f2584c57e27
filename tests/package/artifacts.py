"""What the package tests install, built once and kept under .state/package/.

* ``build_debs(suffix)``: ``dpkg-buildpackage -us -uc -b`` in a copy of the package's inputs
  (debian/, the project's sources and its lock), twice: as they are, and with a changelog
  entry of a higher version on top, as a release would add (the upgrade tests; the second
  build also shows that the bundled set does not change). Cached by a hash of the inputs: an
  unchanged tree reuses the packages of an earlier session.
* ``debian_root()``: a clean Debian 12 root from mmdebstrap (minbase, plus systemd to boot
  it, apt's package lists, so that ``apt install ./x.deb`` can fetch the Depends, and the
  /etc/hosts an installed system has), one per day, older ones pruned. Not an overlay of
  this machine: a missing Depends shows.

The build needs the build dependencies (``apt-get build-dep ./``, which scripts/bootstrap
runs) and the network to PyPI and Debian's mirror, like any build of the package.

CLI, from the repository root (as root)::

    python3 -m tests.package.artifacts debs | root
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE = REPO_ROOT / ".state" / "package"
# Everything dpkg-buildpackage reads: debian/ and what debian/rules and build-venv copy.
INPUTS = ("debian", "airflow_systemd", "pyproject.toml", "README.md", "requirements", "docs")
SUITE = "bookworm"
KEEP_BUILDS = 3  # trees, each with its package and upgrade package (2 x 46 MB)
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time per artifact, across concurrent test sessions."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def input_files() -> list[str]:
    """The package's inputs as git sees them: tracked or new, not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *INPUTS],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({f for f in out.decode().split("\0") if f and os.path.lexists(REPO_ROOT / f)})


def inputs_hash(files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        path = REPO_ROOT / name
        if path.is_symlink():
            content = b"link:" + os.readlink(path).encode()
        else:
            content = path.read_bytes() + (b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:16]


def _top_changelog_entry(source: Path, suffix: str) -> None:
    """Put an entry for the current version plus ``suffix`` on top of debian/changelog."""
    changelog = source / "debian" / "changelog"
    old = changelog.read_text()
    version = subprocess.run(
        ["dpkg-parsechangelog", "-l", changelog, "-S", "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    trailer = next(line for line in old.splitlines() if line.startswith(" -- "))
    maintainer = trailer[4:].split("  ", 1)[0]
    date = subprocess.run(["date", "-R"], capture_output=True, text=True, check=True).stdout.strip()
    entry = (
        f"airflow-systemd ({version}{suffix}) {SUITE}; urgency=medium\n\n"
        "  * Rebuild with a higher version, for the upgrade tests.\n\n"
        f" -- {maintainer}  {date}\n\n"
    )
    changelog.write_text(entry + old)


def _dpkg_buildpackage(source: Path) -> Path:
    """Build in ``source``; the .deb and build.log land in its parent, the tree is deleted."""
    out = source.parent
    log = out / "build.log"
    started = time.monotonic()
    with open(log, "wb") as f:
        done = subprocess.run(
            ["dpkg-buildpackage", "-us", "-uc", "-b"],
            cwd=source,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"dpkg-buildpackage failed (exit {done.returncode}), see {log}:\n{tail}")
    (out / "build-seconds").write_text(f"{time.monotonic() - started:.0f}\n")
    shutil.rmtree(source)  # 300 MB of build tree
    (deb,) = out.glob("airflow-systemd_*.deb")
    return deb


def build_debs(upgrade_suffix: str) -> tuple[Path, Path]:
    """The .deb of the current tree, and one of the same sources whose changelog has a version
    ending in ``upgrade_suffix`` on top, as a release would add. Both from one copy of the
    tree, so that edits made in the meantime cannot set them apart."""
    files = input_files()
    out = STATE / "build" / inputs_hash(files)
    with _locked("build"):
        if not (out / "done").exists():
            _prune(out.parent, keep=KEEP_BUILDS)
            shutil.rmtree(out, ignore_errors=True)
            snapshot = out / "snapshot"
            for name in files:
                target = snapshot / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / name, target, follow_symlinks=False)
            for kind in ("release", "upgrade"):
                source = out / kind / "src"
                shutil.copytree(snapshot, source, symlinks=True)
                if kind == "upgrade":
                    _top_changelog_entry(source, upgrade_suffix)
                _dpkg_buildpackage(source)
            shutil.rmtree(snapshot)
            (out / "done").touch()
        out.touch()  # recently used: kept by the pruning
        return next((out / "release").glob("*.deb")), next((out / "upgrade").glob("*.deb"))


def _prune(builds: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used builds (55 MB each)."""
    if not builds.is_dir():
        return
    by_use = sorted(builds.iterdir(), key=lambda d: d.stat().st_mtime, reverse=True)
    for old in by_use[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def debian_root(day: datetime.date | None = None) -> Path:
    """A clean Debian 12 root tree for today (made once a day), for Sandbox(lower=...)."""
    day = day or datetime.date.today()
    roots = STATE / "debian-root"
    root = roots / f"{SUITE}-{day:%Y%m%d}"
    with _locked("debian-root"):
        if (root / "etc" / "hosts").exists():  # written last
            return root
        shutil.rmtree(root, ignore_errors=True)
        roots.mkdir(parents=True, exist_ok=True)
        for old in roots.glob(f"{SUITE}-*"):  # yesterday's may still be under a running sandbox
            if old.name < f"{SUITE}-{day - datetime.timedelta(days=1):%Y%m%d}":
                shutil.rmtree(old, ignore_errors=True)
        partial = roots / f".{root.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        # The machine's own Debian sources (its mirror, with -updates and -security), or
        # mmdebstrap's defaults for the suite when it has none.
        sources = HOST_SOURCES.read_text() if HOST_SOURCES.exists() else None
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=systemd",
                "--skip=cleanup/apt/lists",
                SUITE,
                partial,
                *(["-"] if sources else []),
            ],
            input=sources,
            text=True,
            check=True,
            capture_output=True,
        )
        # What Debian's installer (and any cloud image) adds and a bootstrap lacks: without it
        # nothing resolves "localhost", Airflow's default address of its execution API.
        (partial / "etc" / "hosts").write_text(
            "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
        )
        partial.rename(root)
        return root


def main(argv: list[str]) -> int:
    if argv[1:] == ["debs"]:
        print(*build_debs("+upgradetest1"), sep="\n")
    elif argv[1:] == ["root"]:
        print(debian_root())
    else:
        print(__doc__.split("CLI")[1].strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
