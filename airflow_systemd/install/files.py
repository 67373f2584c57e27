"""The files install-units owns: the header that marks them, atomic writes, the reloads after.

``uninstall-units`` removes only files carrying :data:`MARKER` as a line of their own, so a
unit written by hand or by the Debian package (whose units are the same text without the
header) is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys

from airflow_systemd.contract import CATALOG
from airflow_systemd.install.render import has_source, source_path, template_path

MARKER = "# Installed by airflow-systemd install-units"
# journalctl reads catalogs from both; /usr/lib is the package manager's (the .deb's).
CATALOG_DIRS = ("/usr/local/lib/systemd/catalog", "/usr/lib/systemd/catalog")


def stamped(name: str, text: str) -> str:
    """``text`` as install-units writes it: after the header that marks the file as its own."""
    if name == CATALOG:
        return f"{MARKER}\n{text}"
    origin = source_path(f"{name}.in") if has_source(name) else template_path(name)
    header = [
        MARKER,
        f"# from {origin}.",
        "# Re-run install-units rather than editing this file; for local changes",
        f"# use a drop-in: systemctl edit {name}",
        "",
    ]
    return "\n".join(header) + "\n" + text


def systemd_booted() -> bool:
    return os.path.isdir("/run/systemd/system")


def systemctl(*args: str) -> None:
    try:
        subprocess.run(["systemctl", *args], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"systemctl {' '.join(args)} failed: {exc}") from None


def is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(line.rstrip("\n") == MARKER for line in f)
    except OSError:
        return False


def update_catalog(catalog_dir: str) -> None:
    """Rebuild journalctl's catalog index, so that `journalctl -x` explains our events."""
    if catalog_dir not in CATALOG_DIRS:
        print(
            f"journalctl reads no catalog in {catalog_dir}: skipped journalctl --update-catalog",
            file=sys.stderr,
        )
        return
    try:
        subprocess.run(["journalctl", "--update-catalog"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"warning: journalctl --update-catalog failed: {exc}", file=sys.stderr)


def write(path: str, text: str, mode: int) -> None:
    """Atomically, so that a daemon-reload never sees half a unit."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
