"""`install-units` and `uninstall-units`: the systemd units for a pip-installed airflow-systemd.

``install-units`` renders the units from their one source (:mod:`.render`) for a virtualenv,
a user and an AIRFLOW_HOME, after checking as that user that the service can reach what it
needs (:mod:`.access`), and writes each file with a header that says who wrote it: the only
files ``uninstall-units`` removes. The Debian package ships the same units rendered for its
own paths (``--dry-run`` with those paths prints them byte for byte).
"""

from __future__ import annotations

import argparse
import os
import sys

from airflow_systemd import secrets_file
from airflow_systemd.contract import (
    ALERT_CONFIG,
    ALERT_CONFIG_TEMPLATE,
    ALERT_USER,
    CATALOG,
    DEFAULT_ENV_FILE,
    DEFAULT_HOME,
    DEFAULT_USER,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
)
from airflow_systemd.install import files, host
from airflow_systemd.install.access import (
    Need,
    Refusal,
    anchor,
    check_access,
    refuse_code_writable_by,
    refuse_path_writable_by,
    refuse_private_tmp,
    resolve_account,
)
from airflow_systemd.install.files import MARKER
from airflow_systemd.install.render import (
    ALERT_UNIT,
    SCHEDULER_UNIT,
    TARGET_UNIT,
    render_alert_unit,
    render_services,
    render_target,
    source_path,
    template_path,
    template_text,
)
from airflow_systemd.install.sandbox import plan_sandbox

# What `systemctl enable --now` should name, per Airflow major version.
SERVICES_BY_MAJOR = {
    "3": ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server"),
    "2": ("airflow-scheduler", "airflow-triggerer", "airflow-webserver"),
}
TIMERS = ("airflow-db-clean.timer", "airflow-log-clean.timer")
RELAXED_DROP_IN = "hardening-relaxed.conf"
ENV_FILE_TEMPLATE = "airflow.default"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_CATALOG_DIR = files.CATALOG_DIRS[0]


def install_units(args: argparse.Namespace) -> int:
    try:
        return _install(args)
    except Refusal as exc:
        print(f"airflow-systemd install-units: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, RuntimeError) as exc:
        print(f"airflow-systemd install-units: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _install(args: argparse.Namespace) -> int:
    venv = host.abspath(args.venv, "--venv")
    home = host.abspath(args.airflow_home, "--airflow-home")
    unit_dir = host.abspath(args.unit_dir, "--unit-dir")
    env_file = host.abspath(args.env_file, "--env-file")
    account = resolve_account(args.user, args.group)
    if not os.path.isdir(unit_dir):
        raise Refusal(f"--unit-dir {unit_dir} is not a directory")

    executable = os.path.join(venv, "bin", "airflow-systemd")
    # First what the service execs, so that a venv the user cannot reach is named as such
    # before its interpreter is asked anything.
    early = plan_sandbox(home, [venv, os.path.realpath(venv)])
    check_access(
        account,
        [
            Need(venv, os.R_OK | os.X_OK, anchor(venv, early), "the virtualenv (--venv)"),
            Need(executable, os.R_OK | os.X_OK, anchor(executable, early), "ExecStart="),
        ],
    )
    info = host.query_venv(venv)
    code = [venv, os.path.realpath(venv), info["base_prefix"], *info["package"]]
    # Code there is mounted back (plan_sandbox); state there would vanish with the service.
    refuse_private_tmp(home, "--airflow-home")
    sandbox = plan_sandbox(home, code)
    needs = [
        Need(p, os.R_OK | os.X_OK, anchor(p, sandbox), what)
        for p, what in [
            (venv, "the virtualenv (--venv)"),
            (executable, "ExecStart="),
            (info["executable"], "the virtualenv's interpreter"),
            *((p, "the Python library") for p in info["paths"] if os.path.isdir(p)),
            *((p, "the airflow_systemd package") for p in info["package"]),
        ]
    ]
    if sandbox.state_directory is None:
        needs.append(
            Need(home, os.R_OK | os.W_OK | os.X_OK, anchor(home, sandbox), "AIRFLOW_HOME (--airflow-home)")
        )
    check_access(account, needs)
    refuse_code_writable_by(account, [venv, *info["package"]])
    alert_config = host.abspath(args.alert_config, "--alert-config")
    catalog_dir = host.abspath(args.catalog_dir, "--catalog-dir")
    secrets_path = host.abspath(args.secrets_file, "--secrets-file")
    for path, option in (
        (secrets_path, "--secrets-file"),
        (env_file, "--env-file"),
        (alert_config, "--alert-config"),
    ):
        refuse_path_writable_by(account, path, option)

    services = render_services(
        user=account.user,
        group=account.group,
        airflow_home=home,
        venv=venv,
        env_file=env_file,
        sandbox=sandbox,
        secrets_path=secrets_path,
    )
    rendered = {os.path.join(unit_dir, name): text for name, text in services.items()}
    rendered[os.path.join(unit_dir, TARGET_UNIT)] = render_target()
    rendered[os.path.join(unit_dir, ALERT_UNIT)] = render_alert_unit(
        venv,
        alert_config,
        sandbox,
        args.alert_user,
        None if args.alert_user == ALERT_USER else host.primary_group(args.alert_user),
    )
    rendered[os.path.join(catalog_dir, CATALOG)] = template_text(CATALOG)
    if args.dry_run:
        # The files as rendered; written, each starts with the header of files.stamped().
        print(f"# install-units writes each file below after a header starting {MARKER!r}")
        for path, text in rendered.items():
            print(f"# ---- {path}")
            print(text, end="")
        return EXIT_OK

    for path in rendered:
        if os.path.exists(path) and not files.is_ours(path) and not args.force:
            raise Refusal(
                f"{path} exists and was not written by install-units (no {MARKER!r} line): "
                "move it away or pass --force"
            )
    alert_gid = host.ensure_alert_user(args.alert_user)
    try:
        said = secrets_file.ensure(
            secrets_path, account.group, take_over=os.path.join(home, os.path.basename(secrets_file.OLD_PATH))
        )
    except secrets_file.SecretsProblem as exc:
        raise Refusal(f"--secrets-file {secrets_path}: {exc}") from None
    print(said, file=sys.stderr)
    os.makedirs(catalog_dir, mode=0o755, exist_ok=True)
    for path, text in rendered.items():
        files.write(path, files.stamped(os.path.basename(path), text), 0o644)
        print(f"wrote {path}", file=sys.stderr)
    if not os.path.exists(env_file):
        files.write(env_file, template_text(ENV_FILE_TEMPLATE), 0o600)
        print(f"wrote {env_file} (a template: set the database there)", file=sys.stderr)
    if not os.path.exists(alert_config):
        os.makedirs(os.path.dirname(alert_config), mode=0o755, exist_ok=True)
        files.write(alert_config, template_text(ALERT_CONFIG_TEMPLATE), 0o640)
        print(f"wrote {alert_config} (a template: set the alert channels there)", file=sys.stderr)
    # Readable by the alert's account and root only, also when an older version left it 0600.
    os.chown(alert_config, 0, alert_gid)
    os.chmod(alert_config, 0o640)
    files.update_catalog(catalog_dir)

    if args.no_reload:
        pass
    elif files.systemd_booted():
        files.systemctl("daemon-reload")
    else:
        print("systemd is not running here: skipped systemctl daemon-reload", file=sys.stderr)
    print(
        f"next: systemctl enable --now {TARGET_UNIT} "
        f"{' '.join(SERVICES_BY_MAJOR.get(info.get('airflow_major', '3'), SERVICES_BY_MAJOR['3']))} "
        f"{' '.join(TIMERS)}\n"
        f"tasks that need sudo, a JIT or namespaces: see {template_path(RELAXED_DROP_IN)}",
        file=sys.stderr,
    )
    return EXIT_OK


def uninstall_units(args: argparse.Namespace) -> int:
    unit_dir = os.path.abspath(args.unit_dir)
    try:
        names = sorted(os.listdir(unit_dir))
    except OSError as exc:
        print(f"airflow-systemd uninstall-units: --unit-dir {unit_dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    ours = [
        n
        for n in names
        if n.startswith("airflow")
        and os.path.isfile(os.path.join(unit_dir, n))
        and not os.path.islink(os.path.join(unit_dir, n))
        and files.is_ours(os.path.join(unit_dir, n))
    ]
    if not ours:
        print(f"nothing to remove: no unit in {unit_dir} was written by install-units", file=sys.stderr)
        return EXIT_OK
    catalog_dir = os.path.abspath(args.catalog_dir)
    catalog = os.path.join(catalog_dir, CATALOG)
    removed = [os.path.join(unit_dir, n) for n in ours]
    if files.is_ours(catalog) and catalog not in removed:
        removed.append(catalog)
    if args.dry_run:
        for path in removed:
            print(path)
        return EXIT_OK
    use_systemctl = not args.no_reload and files.systemd_booted()
    try:
        if use_systemctl:
            files.systemctl("disable", "--now", *(n for n in ours if "@." not in n))  # not templates
        for path in removed:
            os.unlink(path)
            print(f"removed {path}", file=sys.stderr)
        if catalog in removed:
            files.update_catalog(catalog_dir)
        if use_systemctl:
            files.systemctl("daemon-reload")
    except (OSError, RuntimeError) as exc:
        print(f"airflow-systemd uninstall-units: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        "kept: the environment file, AIRFLOW_HOME, /var/log/airflow, drop-ins "
        f"({unit_dir}/{SCHEDULER_UNIT}.d), {ALERT_CONFIG} and the alert state",
        file=sys.stderr,
    )
    return EXIT_OK


INSTALL_HELP = f"""\
Write the Airflow units (every service and timer shipped beside
{template_path(SCHEDULER_UNIT)}) and {TARGET_UNIT} into --unit-dir for this virtualenv,
then run systemctl daemon-reload. The units are rendered from the source of the
shipped ones ({source_path("")}), with ExecStart= pointing into the virtualenv, and
User=, Group=, AIRFLOW_HOME and EnvironmentFile= set from the options. The sandbox (ProtectSystem=strict,
ProtectHome=yes) is adapted: an AIRFLOW_HOME outside /var/lib becomes a ReadWritePaths=,
a virtualenv or AIRFLOW_HOME under /home or /root is mounted back into ProtectHome=tmpfs.
A missing --env-file is created from a commented template (mode 0600).
The installation's shared Airflow keys go to --secrets-file (root:GROUP 0640), once:
an existing file is kept, one that an older version left in AIRFLOW_HOME is taken over.

Alerting: {ALERT_UNIT}, started by each unit after every run and by its
OnFailure=, runs as --alert-user (created with systemd-sysusers if it is the default
{ALERT_USER}); the alert channels in --alert-config (a commented template if
missing; root:{ALERT_USER} 0640 either way) and the journal's message catalog
{CATALOG} in --catalog-dir, indexed with journalctl --update-catalog.

Before writing, it checks as --user, with that user's groups, that the user can reach
the virtualenv, its interpreter, its Python library and AIRFLOW_HOME: every directory on
the way must let the user in; that the user cannot change the virtualenv or the
airflow-systemd code, which the alert runs as another account; and that it cannot
change --env-file, --secrets-file or --alert-config, which root and the alert's account
read. DAG code runs as --user. It refuses (exit 78) naming the first path that fails,
and when a user or group does not exist.

Then, for Airflow 3: systemctl enable --now {TARGET_UNIT} {" ".join(SERVICES_BY_MAJOR["3"])}
(Airflow 2.10: {" ".join(SERVICES_BY_MAJOR["2"])}), and the timers {" ".join(TIMERS)}.
Tasks that need sudo (run_as_user), a JIT (java, node) or namespaces: copy
{template_path(RELAXED_DROP_IN)} into /etc/systemd/system/{SCHEDULER_UNIT}.d/.

exit status: 0 written, 1 could not write or reload, 78 refused (nothing written)
"""

UNINSTALL_HELP = f"""\
Stop and disable the units that install-units wrote into --unit-dir, remove them and run
systemctl daemon-reload. Only files carrying the line
  {MARKER}
are touched, and the message catalog in --catalog-dir. The environment file,
AIRFLOW_HOME, the logs, any drop-in directory, the alert channels and the alert state
are kept.
"""


def register(subparsers) -> None:
    """Add ``install-units`` and ``uninstall-units`` to the ``airflow-systemd`` command."""
    install = subparsers.add_parser(
        "install-units",
        help="write the systemd units for this virtualenv (pip installs; the .deb ships its own)",
        description=INSTALL_HELP,
    )
    install.add_argument(
        "--user", default=DEFAULT_USER, help="the account the service runs as (default: %(default)s)"
    )
    install.add_argument("--group", default=None, help="its group (default: the user's primary group)")
    # Where things are: (option, default, metavar, what it is).
    for option, default, metavar, what in (
        (
            "--airflow-home",
            DEFAULT_HOME,
            "PATH",
            "AIRFLOW_HOME of the service; under /var/lib systemd creates it",
        ),
        ("--venv", sys.prefix, "PATH", "the virtualenv airflow-systemd is installed in (this one)"),
        ("--unit-dir", DEFAULT_UNIT_DIR, "DIR", "where to write"),
        (
            "--env-file",
            DEFAULT_ENV_FILE,
            "PATH",
            "the EnvironmentFile= of the unit, created from a template if missing",
        ),
        ("--alert-config", ALERT_CONFIG, "PATH", "the alert channels, created from a template if missing"),
        (
            "--secrets-file",
            secrets_file.DEFAULT_PATH,
            "PATH",
            "the installation's shared Airflow keys, created if missing, root:GROUP 0640",
        ),
        (
            "--alert-user",
            ALERT_USER,
            "USER",
            "the account the alerts run as, created if it is the default and missing",
        ),
        ("--catalog-dir", DEFAULT_CATALOG_DIR, "DIR", "where the journal's message catalog goes"),
    ):
        install.add_argument(option, default=default, metavar=metavar, help=f"{what} (default: %(default)s)")
    install.add_argument("--dry-run", action="store_true", help="print the rendered units, write nothing")
    install.add_argument("--no-reload", action="store_true", help="do not run systemctl daemon-reload")
    install.add_argument(
        "--force", action="store_true", help="overwrite unit files that install-units did not write"
    )
    install.set_defaults(func=install_units)

    uninstall = subparsers.add_parser(
        "uninstall-units",
        help="stop, disable and remove the units install-units wrote",
        description=UNINSTALL_HELP,
    )
    uninstall.add_argument(
        "--unit-dir", default=DEFAULT_UNIT_DIR, metavar="DIR", help="where they are (default: %(default)s)"
    )
    uninstall.add_argument(
        "--catalog-dir",
        default=DEFAULT_CATALOG_DIR,
        metavar="DIR",
        help="where install-units put the message catalog (default: %(default)s)",
    )
    uninstall.add_argument("--dry-run", action="store_true", help="list what would be removed")
    uninstall.add_argument(
        "--no-reload", action="store_true", help="do not call systemctl (no stop, disable or reload)"
    )
    uninstall.set_defaults(func=uninstall_units)
