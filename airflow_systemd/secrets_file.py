"""`generate-secrets`: the keys every Airflow process of one installation must share.

Each Airflow process invents its own Fernet key, API secret key and JWT secret when none is
configured; then one process cannot read what another encrypted, and Airflow 3 rejects the
task tokens the API server did not sign itself. Every Airflow unit reads this file with
EnvironmentFile=, and so does the ``+`` (root) line of every unit that asks systemd for an
alert. That is why the file, and every directory above it, must be out of reach of the airflow
user, which runs DAG code: a line it could add there (PYTHONPATH=, LD_PRELOAD=, PATH=) would
choose code for a process of another account. So the file is root's, readable by the
services' group (0640), in a root-owned directory; root writes it (the Debian package's
postinst, ``install-units``), and no service does.

An existing file is kept (its ownership and mode corrected), so upgrades keep the keys. A file
of an older installation, where the airflow user wrote it into its own home, is *taken over*:
only the four key names are read from it, each value checked to be a plain token, and the old
file is removed; anything else it holds (a PYTHONPATH= a DAG added, say) is dropped and named.
"""

from __future__ import annotations

import argparse
import base64
import grp
import os
import re
import secrets
import stat
import sys

from airflow_systemd import plain_file
from airflow_systemd.contract import DEFAULT_GROUP
from airflow_systemd.contract import OLD_SECRETS_FILE as OLD_PATH
from airflow_systemd.contract import SECRETS_FILE as DEFAULT_PATH

KEYS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",  # Airflow 3
    "AIRFLOW__API_AUTH__JWT_SECRET",  # Airflow 3
    "AIRFLOW__WEBSERVER__SECRET_KEY",  # Airflow 2
)
# What generate() makes (urlsafe base64 and token_urlsafe): nothing a shell or systemd reads
# as more than a word.
_TOKEN = re.compile(r"^[A-Za-z0-9_=-]{16,200}$")


class SecretsProblem(Exception):
    """The file cannot be written safely; the message says why."""


def generate() -> dict[str, str]:
    fernet = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # Fernet's key format
    return {
        "AIRFLOW__CORE__FERNET_KEY": fernet,
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),
    }


def read_old_keys(path: str) -> tuple[dict[str, str], list[str]]:
    """The keys in an older installation's file, and the names of the lines dropped.

    The file and its directory belong to the airflow user: it is opened without following a
    link and without blocking (a FIFO), must be a regular file of a sane size, and is read as
    data only.
    """
    try:
        text, _ = plain_file.read(path)
    except FileNotFoundError:
        return {}, []
    except plain_file.NotPlain as exc:
        raise SecretsProblem(str(exc)) from None
    except OSError as exc:
        raise SecretsProblem(f"cannot read {path}: {exc.strerror}") from None
    keys, dropped = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip().strip("'\"")
        if name in KEYS and _TOKEN.match(value):
            keys[name] = value
        else:
            dropped.append(name[:60] or "(a line without a name)")
    return keys, dropped


def check_directory(path: str) -> None:
    """Refuse a directory anyone but root could change: the units' root lines read its files
    (secrets.env here, /etc/default/airflow too for import-settings)."""
    info = os.stat(path)
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SecretsProblem(
            f"{path} must belong to root and be writable by root only (it is "
            f"uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})"
        )


def ensure(path: str = DEFAULT_PATH, group: str = DEFAULT_GROUP, take_over: str | None = OLD_PATH) -> str:
    """Make ``path`` hold the installation's keys, root:``group`` 0640; says what it did.

    Keeps an existing file's keys (fixing its owner and mode), else takes over ``take_over``'s
    keys (completing the missing ones), else generates them. Must run as root.
    """
    if os.geteuid() != 0:
        raise SecretsProblem("run it as root: the file must belong to root")
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise SecretsProblem(f"group {group!r} does not exist") from None
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    check_directory(directory)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    else:
        with os.fdopen(fd) as f:
            os.fchown(f.fileno(), 0, gid)
            os.fchmod(f.fileno(), 0o640)
        return f"kept the keys in {path} (root:{group} 0640)"
    keys, dropped = read_old_keys(take_over) if take_over else ({}, [])
    fresh = generate()
    values = {key: keys.get(key, fresh[key]) for key in KEYS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchown(f.fileno(), 0, gid)
        os.fchmod(f.fileno(), 0o640)
        f.write("# The installation's shared Airflow keys, generated once by airflow-systemd\n")
        f.write("# generate-secrets; kept on upgrade. Changing the Fernet key makes stored secrets\n")
        f.write("# unreadable. Settings in /etc/default/airflow win over these.\n")
        f.writelines(f"{key}={value}\n" for key, value in values.items())
    if not keys:
        return f"wrote new keys to {path} (root:{group} 0640)"
    os.unlink(take_over)
    said = f"moved the keys of {take_over} to {path} (root:{group} 0640) and removed it"
    if dropped:
        said += f"; dropped its other lines: {', '.join(dropped)}"
    return said


def _command(args: argparse.Namespace) -> int:
    try:
        print(ensure(args.path, args.group, args.take_over or None), file=sys.stderr)
    except (SecretsProblem, OSError) as exc:
        print(f"airflow-systemd generate-secrets: {exc}", file=sys.stderr)
        return 78
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate-secrets",
        help="create the installation's shared Airflow keys, once (as root)",
        description=__doc__,
    )
    parser.add_argument("path", nargs="?", default=DEFAULT_PATH, help="default: %(default)s")
    parser.add_argument(
        "--group", default=DEFAULT_GROUP, help="the services' group, which may read it (default: %(default)s)"
    )
    parser.add_argument(
        "--take-over",
        default=OLD_PATH,
        metavar="OLD",
        help="an older installation's file to take the keys from, then remove; '' for none "
        "(default: %(default)s)",
    )
    parser.set_defaults(func=_command)
