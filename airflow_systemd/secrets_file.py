"""`generate-secrets`: the keys every Airflow process of one installation must share.

Each Airflow process invents its own Fernet key, API secret key and JWT secret when none is
configured; then one process cannot read what another encrypted, and Airflow 3 rejects the
task tokens the API server did not sign itself. airflow-db-migrate.service runs this once per
installation (ConditionPathExists=!), as the airflow user, into its StateDirectory; every
Airflow unit reads the file with EnvironmentFile=. An existing file is never touched, so
upgrades keep the keys.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys

DEFAULT_PATH = "/var/lib/airflow/secrets.env"


def generate() -> dict[str, str]:
    fernet = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # Fernet's key format
    return {
        "AIRFLOW__CORE__FERNET_KEY": fernet,
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),  # Airflow 3
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),  # Airflow 3
        "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_urlsafe(32),  # Airflow 2.10
    }


def write_once(path: str) -> bool:
    """Create ``path`` (mode 0600) with fresh keys; False if it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write("# Generated once by `airflow-systemd generate-secrets`; shared by every Airflow\n")
        f.write("# service of this installation. Changing the Fernet key makes stored secrets unreadable.\n")
        f.writelines(f"{key}={value}\n" for key, value in generate().items())
    return True


def _command(args: argparse.Namespace) -> int:
    created = write_once(args.path)
    print(f"{'wrote' if created else 'kept existing'} {args.path}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate-secrets",
        help="create the installation's shared Airflow keys, once",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", nargs="?", default=DEFAULT_PATH, help="default: %(default)s")
    parser.set_defaults(func=_command)
