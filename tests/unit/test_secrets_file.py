"""secrets_file: the installation's keys, root's, and the takeover of an older file.

As root (the command refuses anyone else), in directories of the test's own.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from airflow_systemd import secrets_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the file belongs to root: needs root")
GROUP = grp.getgrgid(pwd.getpwnam("daemon").pw_gid).gr_name


def _keys(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and line[0] != "#")


def _owner_mode(path: Path) -> tuple[int, str, int]:
    info = path.stat()
    return info.st_uid, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)


def test_new_keys_are_root_s_readable_by_the_group_and_kept_on_the_next_run(tmp_path):
    path = tmp_path / "etc" / "secrets.env"
    assert "wrote new keys" in secrets_file.ensure(str(path), GROUP, take_over=None)
    keys = _keys(path)
    assert sorted(keys) == sorted(secrets_file.KEYS)
    assert len(set(keys.values())) == 4
    assert _owner_mode(path) == (0, GROUP, 0o640)
    os.chmod(path, 0o666)  # an operator's slip: put right, keys kept
    assert "kept the keys" in secrets_file.ensure(str(path), GROUP, take_over=None)
    assert _keys(path) == keys and _owner_mode(path) == (0, GROUP, 0o640)


def test_an_older_file_is_taken_over_keys_only_and_removed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    old = home / "secrets.env"
    kept = {"AIRFLOW__CORE__FERNET_KEY": "b2xkLWZlcm5ldC1rZXktb2YtdmVyc2lvbi0wLjEhISE="}
    kept["AIRFLOW__API_AUTH__JWT_SECRET"] = "old-jwt-secret-0123456789abcdef"
    old.write_text(
        "# comment\n"
        + "".join(f"{k}={v}\n" for k, v in kept.items())
        + "PYTHONPATH=/var/lib/airflow/.x\nLD_PRELOAD=/var/lib/airflow/.x/p.so\n"
        + "AIRFLOW__API__SECRET_KEY=$(id)\n"  # not a token: dropped, a fresh one instead
    )
    os.chown(old, pwd.getpwnam("daemon").pw_uid, 0)
    path = tmp_path / "secrets.env"
    said = secrets_file.ensure(str(path), GROUP, take_over=str(old))
    assert "dropped its other lines: PYTHONPATH, LD_PRELOAD, AIRFLOW__API__SECRET_KEY" in said
    keys = _keys(path)
    assert {k: keys[k] for k in kept} == kept
    assert sorted(keys) == sorted(secrets_file.KEYS) and "$(id)" not in path.read_text()
    assert not old.exists()
    assert _owner_mode(path) == (0, GROUP, 0o640)


def test_a_link_in_the_old_place_is_not_followed(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("AIRFLOW__CORE__FERNET_KEY=b2xkLWZlcm5ldC1rZXktb2YtdmVyc2lvbi0wLjEhISE=\n")
    (tmp_path / "old.env").symlink_to(target)
    with pytest.raises(secrets_file.SecretsProblem, match="cannot read"):
        secrets_file.ensure(str(tmp_path / "new" / "secrets.env"), GROUP, take_over=str(tmp_path / "old.env"))
    assert target.exists()


def test_a_directory_another_account_could_change_is_refused(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o775)
    directory.chmod(0o775)
    with pytest.raises(secrets_file.SecretsProblem, match="writable by root only"):
        secrets_file.ensure(str(directory / "secrets.env"), GROUP, take_over=None)
    directory.chmod(0o755)
    os.chown(directory, pwd.getpwnam("daemon").pw_uid, 0)
    with pytest.raises(secrets_file.SecretsProblem, match="must belong to root"):
        secrets_file.ensure(str(directory / "secrets.env"), GROUP, take_over=None)
    assert not (directory / "secrets.env").exists()
