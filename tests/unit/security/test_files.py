"""Secret files and private folders: created private, refused when others can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from procall.security import (
    InsecureFileError,
    private_dir,
    private_file,
    require_private,
    write_private,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask, so that only the code under test can make a file private."""
    previous = os.umask(0o000)
    yield None
    os.umask(previous)


def test_write_private_creates_0600_and_replaces_atomically(
    tmp_path: Path, open_umask: object
) -> None:
    secret = tmp_path / "secret.toml"
    write_private(secret, "token = 'one'\n")
    assert _mode(secret) == 0o600
    assert secret.read_text() == "token = 'one'\n"

    secret.chmod(0o644)  # an old copy, written before files were private
    write_private(secret, b"token = 'two'\n")
    assert _mode(secret) == 0o600
    assert secret.read_text() == "token = 'two'\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.toml"]  # no temporary left


def test_write_private_does_not_follow_a_planted_temporary_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "secret"
    (tmp_path / f".secret.{os.getpid()}.tmp").symlink_to(victim)
    write_private(target, "s3cret")
    assert victim.read_text() == "keep"
    assert target.read_text() == "s3cret"


def test_private_file_creates_empty_0600_and_tightens_an_existing_one(
    tmp_path: Path, open_umask: object
) -> None:
    database = tmp_path / "procall.db"
    assert private_file(database) is True
    assert _mode(database) == 0o600 and database.read_bytes() == b""

    database.write_bytes(b"data")
    database.chmod(0o664)
    assert private_file(database) is False
    assert _mode(database) == 0o600
    assert database.read_bytes() == b"data"


def test_private_dir_creates_0700_and_tightens_an_existing_one(
    tmp_path: Path, open_umask: object
) -> None:
    created = private_dir(tmp_path / "a" / "data")
    assert _mode(created) == 0o700

    older = tmp_path / "older"
    older.mkdir(mode=0o755)
    older.chmod(0o755)
    private_dir(older)
    assert _mode(older) == 0o700


def test_private_dir_refuses_a_folder_others_may_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(InsecureFileError, match="may be written by others"):
        private_dir(shared)
    assert _mode(shared) == 0o1777  # left as it was


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_require_private_refuses_a_file_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "signing.key"
    key.write_text("private")
    key.chmod(mode)
    with pytest.raises(InsecureFileError) as raised:
        require_private(key)
    message = str(raised.value)
    assert str(key) in message and f"{mode:04o}" in message and "chmod 600" in message
    assert "\n" not in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_require_private_accepts_an_owner_only_file(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "signing.key"
    key.write_text("private")
    key.chmod(mode)
    require_private(key)


def test_require_private_lets_a_missing_file_through_as_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        require_private(tmp_path / "missing.key")
