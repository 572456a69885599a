"""A settings file holding secrets must be private before a server starts from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from procall.servers.runtime.app import StartupError
from procall.servers.runtime.serve import require_private_settings


def _settings_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "procall.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[auth]\nservice_credential = "s3cret"\n', "[auth] service_credential"),
        ('[ldap]\nbind_password = "s3cret"\n', "[ldap] bind_password"),
        ('[database]\nurl = "postgresql+asyncpg://procall:pw@db/procall"\n', "[database] url"),
        ('[database]\nchat_url = "postgresql+asyncpg://u:pw@db/chat"\n', "[database] chat_url"),
        ('[redis]\nurl = "redis://:pw@redis:6379/0"\n', "[redis] url"),
    ],
)
def test_a_secret_in_a_file_others_can_read_stops_the_start(
    tmp_path: Path, text: str, named: str
) -> None:
    path = _settings_file(tmp_path, text, 0o644)
    with pytest.raises(StartupError) as raised:
        require_private_settings(path)
    message = str(raised.value)
    assert named in message and "0644" in message and f"chmod 600 {path}" in message
    assert "s3cret" not in message and "pw" not in message.replace(str(path), "")
    assert "\n" not in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_file_with_secrets_is_accepted(tmp_path: Path, mode: int) -> None:
    require_private_settings(_settings_file(tmp_path, '[auth]\nservice_credential = "s"\n', mode))


def test_a_file_without_secrets_may_be_shared(tmp_path: Path) -> None:
    text = (
        '[server]\nport = 7001\n[auth]\nservice_credential = ""\n'
        '[database]\nurl = "postgresql+asyncpg://procall@db/procall"\n'
        '[redis]\nurl = "redis://redis:6379/0"\n'
    )
    require_private_settings(_settings_file(tmp_path, text, 0o644))
