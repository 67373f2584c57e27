"""What the package tests install, made once per test session in a directory of its own, for
each Debian release the package is built for (``SUITES``: bookworm, Debian 12; trixie, 13).

* ``build_debs(workdir, suite, suffix)``: ``dpkg-buildpackage -us -uc -b`` in a clean root of
  the suite (mmdebstrap, buildd variant, with the Build-Depends and the suite's lintian), from
  a copy of the package's inputs (debian/, the project's sources and its locks); lintian of
  that suite on the .deb; then the upgrade package: the tree that build packed, with the
  version raised by ``suffix`` in its control file and packed again, as a release with a new
  changelog entry would be (the same files apart from that changelog; one build, not two).
  The root is thrown away with everything else it holds (mmdebstrap's null format).
* ``debian_root(workdir, suite)``: a clean root of the suite from mmdebstrap (minbase, plus
  systemd to boot it and apt's package lists, so that ``apt install ./x.deb`` can fetch the
  Depends), for ``Sandbox(lower=...)``. Not an overlay of this machine: a missing Depends shows.
* ``piuparts(workdir, suite, deb, previous)``: Debian's package tester (install, remove,
  purge; upgrade from ``previous``) in a clean minbase root of the suite.

Every root has the machine's own Debian sources (its mirror, -updates and -security) with the
suite's name in place of this machine's, and the build root the machine's CA bundle for pip,
as the machine's own builds use it (its TLS goes through the registry's proxy).

Nothing is kept from one session to the next (a build takes 2 to 4 minutes with its root, a
machine root about 20 s): every run builds from the tree as it is and bootstraps from Debian's
mirror, as a fresh clone does in CI. The archives are compressed with gzip -1 (3 s) instead of
dpkg-deb's default xz -6 (about a minute for these 212 MiB on 2 cores, more on a busy
machine): the tests check what the package holds and does, not how small it is (lintian
rejects zstd, which Debian 12's dpkg could install). A plain ``dpkg-buildpackage`` keeps xz.

The build needs the network to PyPI and Debian's mirror, like any build of the package.

CLI, from the repository root (as root), to look at them by hand, or to write the lock of the
suite's Python (``debian/update-lock`` run in a build root of the suite)::

    python3 -m tests.harness.package_artifacts debs|root|lock SUITE DIR
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE = REPO_ROOT / ".state" / "package"
# Everything dpkg-buildpackage reads: debian/ and what debian/rules and build-venv copy.
INPUTS = ("debian", "airflow_systemd", "pyproject.toml", "README.md", "requirements")
# The Debian releases the package is built for, and their numbers (the ~debNNu1 of the
# binary version, debian/rules).
SUITES = {"bookworm": "12", "trixie": "13"}
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# What pip on this machine trusts (PIP_CERT, pip.conf): where its TLS goes through a proxy,
# that proxy's CA is in there, and the build root's pip needs it too.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# dpkg-deb reads these (since dpkg 1.21.10); dh_builddeb passes no -Z of its own.
FAST_COMPRESSION = {"DPKG_DEB_COMPRESSOR_TYPE": "gzip", "DPKG_DEB_COMPRESSOR_LEVEL": "1"}
# piuparts' source of the previous version (a repository of its own), in its base root.
PREVIOUS_LIST = "etc/apt/sources.list.d/previous.list"
# Where the build happens in its root: a path that no bundled file has any reason to contain
# (debian/build-venv fails on any file that names the build directory; "/build/src" does
# turn up in third-party bytecode).
IN_ROOT = "/usr/src/airflow-systemd-build"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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


def copy_inputs(target: Path) -> None:
    for name in input_files():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, path, follow_symlinks=False)


def host_codename() -> str:
    text = Path("/etc/os-release").read_text()
    return re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.MULTILINE)[1]


def suite_sources(suite: str) -> str | None:
    """The machine's own Debian sources for ``suite`` (its mirror, with -updates and
    -security), or None: mmdebstrap's defaults for the suite."""
    if not HOST_SOURCES.exists():
        return None
    return re.sub(rf"\b{host_codename()}\b", suite, HOST_SOURCES.read_text())


def mmdebstrap(suite: str, target: Path | str, *options: str, scratch: Path | None = None) -> None:
    """mmdebstrap with the machine's sources for ``suite``; its temporary root (null format,
    tarballs) in ``scratch`` instead of /tmp."""
    sources = suite_sources(suite)
    env = {**os.environ, "TMPDIR": str(scratch)} if scratch else None
    done = subprocess.run(
        ["mmdebstrap", "--quiet", *options, suite, str(target), *(["-"] if sources else [])],
        input=sources,
        text=True,
        capture_output=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap {suite} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")


def in_build_root(suite: str, script: str, out: Path) -> None:
    """Run the shell ``script`` in a fresh build root of ``suite``: buildd variant, the
    package's Build-Depends (apt-get build-dep) and lintian, the package's inputs in
    $W/src (the working directory; $W is IN_ROOT), the machine's CA bundle for pip; then copy
    what the script left in $W/out into ``out``. The root is thrown away (mmdebstrap's null
    format, in ``out``'s directory rather than /tmp). The script's environment is a clean one;
    its failures are for the caller to read in ``out``: this raises only if the root cannot
    be made."""
    scratch = out.parent / f"{out.name}.scratch"  # what goes into the root as IN_ROOT
    tmp = out.parent / f"{out.name}.tmp"  # mmdebstrap's own, the root itself
    for path in (scratch, tmp):
        shutil.rmtree(path, ignore_errors=True)
    tmp.mkdir(parents=True)
    (scratch / "src").mkdir(parents=True)
    copy_inputs(scratch / "src")
    shutil.copy2(HOST_CA_BUNDLE, scratch / "ca.crt")
    (scratch / "out").mkdir()
    (scratch / "run").write_text(f"set -u\nW={IN_ROOT}\ncd $W/src\n" + script)
    env = {
        "PATH": CHROOT_PATH,
        "HOME": IN_ROOT,
        "LC_ALL": "C.UTF-8",
        "SSL_CERT_FILE": f"{IN_ROOT}/ca.crt",
        "PIP_CERT": f"{IN_ROOT}/ca.crt",
        **FAST_COMPRESSION,
    }
    chroot = f'chroot "$1" env -i {" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())}'
    out.mkdir(parents=True, exist_ok=True)
    try:
        mmdebstrap(
            suite,
            "/dev/null",
            "--variant=buildd",
            "--format=null",
            "--include=lintian",
            f"--customize-hook=copy-in {scratch} /",
            f'--customize-hook=mv "$1/{scratch.name}" "$1{IN_ROOT}"',
            f"--customize-hook={chroot} apt-get -y -q build-dep {IN_ROOT}/src >/dev/null",
            f"--customize-hook={chroot} sh {IN_ROOT}/run",
            f"--customize-hook=sync-out {IN_ROOT}/out {out}",
            scratch=tmp,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


BUILD_SCRIPT = """\
mkdir -p $W/out/release $W/out/upgrade
started=$(date +%s)
dpkg-buildpackage -us -uc -b >$W/out/build.log 2>&1
echo $? >$W/out/build-status
echo $(($(date +%s) - started)) >$W/out/build-seconds
[ "$(cat $W/out/build-status)" = 0 ] || exit 0
mv $W/airflow-systemd_*.deb $W/out/release/
# this suite's lintian (its root warns about running as root, on stderr)
lintian --tag-display-limit 0 $W/out/release/*.deb >$W/out/lintian.txt 2>$W/out/lintian.stderr
echo $? >$W/out/lintian-status
# the upgrade package: the same tree, its version raised
tree=debian/airflow-systemd
sed -i "s/^Version: \\(.*\\)$/Version: \\1{suffix}/" $tree/DEBIAN/control
dpkg-deb --root-owner-group --build $tree $W/out/upgrade >/dev/null
"""


def build_debs(workdir: Path, suite: str, upgrade_suffix: str) -> tuple[Path, Path]:
    """The .deb of the current tree built on ``suite`` (in workdir/SUITE/release), and the
    upgrade package: the same files with a version ending in ``upgrade_suffix`` (in
    workdir/SUITE/upgrade). build.log, build-seconds and lintian.txt are in workdir/SUITE."""
    out = workdir / suite
    started = time.monotonic()
    in_build_root(suite, BUILD_SCRIPT.format(suffix=upgrade_suffix), out)
    (out / "root-and-build-seconds").write_text(f"{time.monotonic() - started:.0f}\n")
    status = out / "build-status"
    if not status.exists() or status.read_text().strip() != "0":
        log = out / "build.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
        raise RuntimeError(f"dpkg-buildpackage on {suite} failed, see {log}:\n{tail}")
    (deb,) = (out / "release").glob("airflow-systemd_*.deb")
    (upgrade,) = (out / "upgrade").glob("airflow-systemd_*.deb")
    return deb, upgrade


def write_lock(workdir: Path, suite: str) -> Path:
    """debian/update-lock run in a build root of ``suite``, on its Python: the lock written
    into this checkout's debian/."""
    out = workdir / f"lock-{suite}"
    script = "debian/update-lock >$W/out/update-lock.log 2>&1; echo $? >$W/out/status\n"
    script += "cp debian/requirements-py*.lock $W/out/\n"
    in_build_root(suite, script, out)
    if (out / "status").read_text().strip() != "0":
        raise RuntimeError((out / "update-lock.log").read_text()[-4000:])
    written = max(out.glob("requirements-py*.lock"), key=lambda p: p.stat().st_mtime)
    shutil.copy2(written, REPO_ROOT / "debian" / written.name)
    return REPO_ROOT / "debian" / written.name


def debian_root(workdir: Path, suite: str) -> Path:
    """A clean root tree of ``suite`` in workdir/root-SUITE, for Sandbox(lower=...)."""
    root = workdir / f"root-{suite}"
    mmdebstrap(suite, root, "--variant=minbase", "--include=systemd", "--skip=cleanup/apt/lists")
    # Left as mmdebstrap makes it, without the /etc/hosts an installer writes: nothing there
    # resolves "localhost", so the DAG test also shows that the package does not need it.
    return root


def piuparts(workdir: Path, suite: str, deb: Path, previous: Path) -> tuple[Path, float]:
    """Debian's package tester on ``deb``, in a clean minbase root of ``suite``: install,
    remove, purge, with what is left, lost or changed checked against the root before; then
    the upgrade test: ``previous`` installed by apt, upgraded to ``deb``, purged, checked the
    same way. ``previous`` comes from a repository of its own (piuparts upgrades from the
    version apt knows), bind-mounted into the chroot. Returns the log and the seconds
    piuparts took; raises on a failure, with the end of the log."""
    out = workdir.resolve() / f"piuparts-{suite}"  # absolute: the chroot's apt reads the repository's path
    repo = out / "previous"
    repo.mkdir(parents=True)
    shutil.copy2(previous, repo)
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."], cwd=repo, capture_output=True, check=True
    ).stdout
    (repo / "Packages").write_bytes(packages)
    base = out / "base.tar.gz"
    # systemd in the root before: the package's hosts run it, and what systemd itself leaves
    # when piuparts removes it with the other dependencies (its tmpfiles' /var/lib/private,
    # /root/.ssh...) is not the package's.
    mmdebstrap(
        suite,
        base,
        "--variant=minbase",
        "--include=systemd",
        f"--customize-hook=echo 'deb [trusted=yes] file://{repo} ./' >\"$1/{PREVIOUS_LIST}\"",
        scratch=out,
    )
    log = out / "piuparts.log"
    started = time.monotonic()
    done = subprocess.run(
        [
            "piuparts",
            f"--basetgz={base}",
            "--keep-sources-list",  # the root's: the machine's mirror and the previous package
            f"--distribution={suite}",
            f"--bindmount={repo}",
            f"--tmpdir={out}",
            f"--log-file={log}",
            # debconf's own temporary directory, which Debian 13's debconf leaves behind after
            # installing and purging the dependencies (the package itself has no debconf);
            # bookworm's piuparts (1.1.7) does not know it yet
            "--ignore=/var/cache/debconf/tmp.ci/",
            deb,
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log.exists() else done.stderr
        raise RuntimeError(f"piuparts on {suite} failed (exit {done.returncode}), see {log}:\n{tail}")
    return log, seconds


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] in ("debs", "root", "lock") and argv[2] in SUITES:
        suite, workdir = argv[2], Path(argv[3]).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        if argv[1] == "debs":
            made = build_debs(workdir, suite, "+upgradetest1")
        elif argv[1] == "root":
            made = (debian_root(workdir, suite),)
        else:
            made = (write_lock(workdir, suite),)
        print(*made, sep="\n")
        return 0
    print(__doc__.split("CLI")[1].strip().splitlines()[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
