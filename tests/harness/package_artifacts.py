"""What the package tests install, made once per test session in a directory of its own.

* ``build_debs(workdir, suffix)``: ``dpkg-buildpackage -us -uc -b`` in a copy of the package's
  inputs (debian/, the project's sources and its lock), then the upgrade package: the tree
  that build packed, with the version raised by ``suffix`` in its control file and packed
  again, as a release with a new changelog entry would be (the same files apart from that
  changelog; one build, not two).
* ``debian_root(workdir)``: a clean Debian 12 root from mmdebstrap (minbase, plus systemd to
  boot it and apt's package lists, so that ``apt install ./x.deb`` can fetch the Depends), for
  ``Sandbox(lower=...)``. Not an overlay of this machine: a missing Depends shows.

Nothing is kept from one session to the next (the build takes about a minute, the root about
20 s): every run builds from the tree as it is and bootstraps from Debian's mirror, as a
fresh clone does in CI. The archives are compressed with gzip -1 (3 s) instead of dpkg-deb's
default xz -6 (about a minute for these 212 MiB on 2 cores, more on a busy machine): the
tests check what the package holds and does, not how small it is (lintian rejects zstd,
which Debian 12's dpkg could install). A plain ``dpkg-buildpackage`` keeps xz.

The build needs the build dependencies (``apt-get build-dep ./``, which scripts/bootstrap
runs) and the network to PyPI and Debian's mirror, like any build of the package.

CLI, from the repository root (as root), to look at them by hand::

    python3 -m tests.harness.package_artifacts debs|root DIR
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE = REPO_ROOT / ".state" / "package"
# Everything dpkg-buildpackage reads: debian/ and what debian/rules and build-venv copy.
INPUTS = ("debian", "airflow_systemd", "pyproject.toml", "README.md", "requirements")
SUITE = "bookworm"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# dpkg-deb reads these (since dpkg 1.21.10); dh_builddeb passes no -Z of its own.
FAST_COMPRESSION = {"DPKG_DEB_COMPRESSOR_TYPE": "gzip", "DPKG_DEB_COMPRESSOR_LEVEL": "1"}


def remove_workdirs_of_dead_sessions() -> None:
    """Remove what is in STATE but not a work directory of a running pytest (named by its PID)."""
    for entry in STATE.glob("*") if STATE.is_dir() else ():
        if not (entry.name.isdigit() and Path(f"/proc/{entry.name}").exists()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()


def input_files() -> list[str]:
    """The package's inputs as git sees them: tracked or new, not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *INPUTS],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({f for f in out.decode().split("\0") if f and os.path.lexists(REPO_ROOT / f)})


def _dpkg_buildpackage(source: Path) -> Path:
    """Build in ``source``; the .deb, build.log and build-seconds land in its parent."""
    out = source.parent
    log = out / "build.log"
    started = time.monotonic()
    with open(log, "wb") as f:
        done = subprocess.run(
            ["dpkg-buildpackage", "-us", "-uc", "-b"],
            cwd=source,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8", **FAST_COMPRESSION},
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"dpkg-buildpackage failed (exit {done.returncode}), see {log}:\n{tail}")
    (out / "build-seconds").write_text(f"{time.monotonic() - started:.0f}\n")
    (deb,) = out.glob("airflow-systemd_*.deb")
    return deb


def _repack_with_version_suffix(tree: Path, suffix: str, out: Path) -> Path:
    """Pack the package tree ``tree`` (with its DEBIAN/) again, its version ending in ``suffix``."""
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    version = re.search(r"^Version: (\S+)$", text, re.MULTILINE)[1]
    control.write_text(text.replace(f"\nVersion: {version}\n", f"\nVersion: {version}{suffix}\n", 1))
    out.mkdir(parents=True)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", tree, out],
        env={**os.environ, **FAST_COMPRESSION},
        capture_output=True,
        check=True,
    )
    (deb,) = out.glob("airflow-systemd_*.deb")
    return deb


def build_debs(workdir: Path, upgrade_suffix: str) -> tuple[Path, Path]:
    """The .deb of the current tree (in workdir/release), and the upgrade package: the same
    files with a version ending in ``upgrade_suffix`` (in workdir/upgrade)."""
    source = workdir / "release" / "src"
    for name in input_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target, follow_symlinks=False)
    deb = _dpkg_buildpackage(source)
    tree = source / "debian" / "airflow-systemd"
    upgrade = _repack_with_version_suffix(tree, upgrade_suffix, workdir / "upgrade")
    shutil.rmtree(source)  # 300 MB of build tree
    return deb, upgrade


def debian_root(workdir: Path) -> Path:
    """A clean Debian 12 root tree in workdir/debian-root, for Sandbox(lower=...)."""
    root = workdir / "debian-root"
    # The machine's own Debian sources (its mirror, with -updates and -security), or
    # mmdebstrap's defaults for the suite when it has none.
    sources = HOST_SOURCES.read_text() if HOST_SOURCES.exists() else None
    done = subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=systemd",
            "--skip=cleanup/apt/lists",
            SUITE,
            root,
            *(["-"] if sources else []),
        ],
        input=sources,
        text=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    # Left as mmdebstrap makes it, without the /etc/hosts an installer writes: nothing there
    # resolves "localhost", so the DAG test also shows that the package does not need it.
    return root


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] in ("debs", "root"):
        workdir = Path(argv[2]).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        made = build_debs(workdir, "+upgradetest1") if argv[1] == "debs" else (debian_root(workdir),)
        print(*made, sep="\n")
        return 0
    print(__doc__.split("CLI")[1].strip().splitlines()[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
