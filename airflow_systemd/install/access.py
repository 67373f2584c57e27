"""What install-units checks before it writes a unit: that the service's user can reach every
file the service needs, and cannot change what root or the alert's account run or read.

Checked as that user, with that user's groups, in a child process that drops root's
privileges: a unit that cannot exec its ExecStart= would otherwise only fail at
``systemctl start``, and a file the service's user (DAG code) could change would choose code
for root's "+" line or for the alert's account.
"""

from __future__ import annotations

import dataclasses
import grp
import json
import os
import pwd
import stat
import sys

from airflow_systemd.contract import ALERT_USER
from airflow_systemd.install.render import template_path
from airflow_systemd.install.sandbox import PRIVATE_TMP_DIRS, Sandbox, is_under


class Refusal(Exception):
    """A problem with the arguments or the host that install-units will not work around."""


@dataclasses.dataclass(frozen=True)
class Account:
    user: str
    uid: int
    group: str
    gid: int

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.user, self.gid)


def resolve_account(user: str, group: str | None) -> Account:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise Refusal(
            f"user {user!r} does not exist: create it first, e.g. with "
            f"systemd-sysusers {template_path('airflow.sysusers')} (creates 'airflow'), "
            f"or useradd --system --home-dir /var/lib/airflow --shell /usr/sbin/nologin {user}"
        ) from None
    if group is None:
        try:
            group = grp.getgrgid(pw.pw_gid).gr_name
        except KeyError:
            raise Refusal(f"the primary group {pw.pw_gid} of user {user!r} does not exist") from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise Refusal(f"group {group!r} does not exist") from None
    return Account(user, pw.pw_uid, group, gid)


_MODE_WORDS = {
    os.R_OK: "read",
    os.R_OK | os.X_OK: "read and execute",
    os.R_OK | os.W_OK | os.X_OK: "read, write and enter",
    os.X_OK: "execute",
}


@dataclasses.dataclass(frozen=True)
class Need:
    """``account`` must have ``mode`` access to ``path``, reaching it from ``anchor``.

    The anchor is "/" for a path the service sees where the host has it; for a path mounted back
    into ProtectHome's tmpfs it is the mounted directory, because the directories above it are
    the tmpfs's, which anyone may enter, and not the host's /root or /home/USER.
    """

    path: str
    mode: int
    anchor: str = "/"
    what: str = ""


def _first_denied(need: Need, anchor_fd: int) -> str | None:
    rel = os.path.relpath(need.path, need.anchor)
    rel = "" if rel == "." else rel
    if os.access(rel or ".", need.mode, dir_fd=anchor_fd):
        return None
    if not os.access(".", os.X_OK, dir_fd=anchor_fd):
        return f"cannot enter {need.anchor}"
    current = ""
    for part in rel.split("/")[:-1]:
        current = os.path.join(current, part)
        if not os.access(current, os.X_OK, dir_fd=anchor_fd):
            return f"cannot enter {os.path.join(need.anchor, current)}"
    return f"cannot {_MODE_WORDS.get(need.mode, 'access')} {need.path}"


def check_access(account: Account, needs: list[Need]) -> None:
    """Refuse unless ``account`` can access every need; tested as that user, in a child process.

    Only root can take another identity; anyone else can only check for themself, and for
    another user (a --dry-run, say) the check is skipped with a warning.
    """
    for need in needs:
        if not os.path.lexists(need.path):
            raise Refusal(f"{need.what or need.path} does not exist: {need.path}")
    if os.geteuid() != 0 and account.uid != os.geteuid():
        print(
            f"warning: not root, so cannot check what user {account.user} can access",
            file=sys.stderr,
        )
        return
    anchors = {n.anchor: os.open(n.anchor, os.O_PATH | os.O_DIRECTORY) for n in needs}
    try:
        problem = _as_user(account, lambda: _first_problem(needs, anchors))
    finally:
        for fd in anchors.values():
            os.close(fd)
    if problem:
        raise Refusal(f"user {account.user} {problem}")


def _first_problem(needs: list[Need], anchors: dict[str, int]) -> str | None:
    for need in needs:
        denied = _first_denied(need, anchors[need.anchor])
        if denied:
            return f"{denied}" + (f" (needed for {need.what})" if need.what else "")
    return None


def _as_user(account: Account, fn) -> str | None:
    """Run ``fn`` with the account's uid, gid and groups; returns its result (a str or None)."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            os.setgroups(account.groups)
            os.setgid(account.gid)
            os.setuid(account.uid)
            os.write(write_end, json.dumps(fn()).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps(f"could not be checked: {exc}").encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else "could not be checked: the check process died"


def _first_writable(paths: list[str]) -> str | None:
    """The first path the calling user could change: in ``paths``, in them, or above them.

    Meant to run as the service's user (:func:`_as_user`). A sticky directory (/tmp) lets no
    one swap the entries of others, so it does not count.
    """
    for top in paths:
        parent = os.path.dirname(top)
        while parent not in ("/", ""):
            try:
                sticky = os.stat(parent).st_mode & stat.S_ISVTX
            except PermissionError:  # cannot reach it, so cannot change it either
                sticky = True
            if not sticky and os.access(parent, os.W_OK):
                return parent
            parent = os.path.dirname(parent)
        if not os.path.isdir(top):
            if os.path.lexists(top) and not os.path.islink(top) and os.access(top, os.W_OK):
                return top
            continue
        for root, _dirs, files in os.walk(top):
            if os.access(root, os.W_OK):
                return root
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path) and os.access(path, os.W_OK):
                    return path
    return None


def refuse_code_writable_by(account: Account, paths: list[str]) -> None:
    """Refuse code that the service's user could change.

    The alert runs from the virtualenv as its own account (airflow-alert@.service): code the
    service's user could change would let anything running as that user (DAG code) run code
    as that account, and read the alert channels' secrets.
    """
    if os.geteuid() != 0 and account.uid != os.geteuid():
        return  # check_access has warned already
    path = _as_user(account, lambda: _first_writable(paths))
    if path:
        raise Refusal(
            f"user {account.user} can write to {path}: the alert runs airflow-systemd from this "
            f"virtualenv as the account {ALERT_USER}, so {account.user} could run code as "
            "another account. Create the virtualenv, and install airflow-systemd, as root."
        )


def refuse_path_writable_by(account: Account, path: str, option: str) -> None:
    """Refuse a file of the units' that the service's user could change (or create).

    The units read the environment files for their ``+`` (root) lines too, and the alert's
    account reads alert.conf: a line DAG code added there would choose code for them.
    """
    if os.geteuid() != 0 and account.uid != os.geteuid():
        return  # check_access has warned already
    # A file that does not exist yet: whoever can write its directory can create it.
    checked = path if os.path.lexists(path) else os.path.dirname(path)
    found = _as_user(account, lambda: _first_writable([checked]))
    if found:
        raise Refusal(
            f"{option} {path}: user {account.user} can write to {found}, and the units read it as "
            "root or as the alert's account: choose a place only root can change"
        )


def refuse_private_tmp(path: str, option: str) -> None:
    for tmp in PRIVATE_TMP_DIRS:
        if is_under(path, tmp):
            raise Refusal(f"{option} {path} is under {tmp}, which the service cannot see (PrivateTmp=yes)")


def anchor(path: str, sandbox: Sandbox) -> str:
    for root in sandbox.bind_read_only + sandbox.bind_read_write + sandbox.bind_private_tmp:
        if is_under(path, root):
            return root
    return "/"
