"""Settings: defaults, TOML file, environment overrides, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from procall.settings import ConfigError, load_settings


def test_defaults_work_on_one_machine() -> None:
    settings = load_settings(env={})
    assert settings.server.host == "127.0.0.1"
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.database.resolved("chat") == settings.database.url


def test_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "procall.toml"
    config.write_text(
        '[server]\nport = 7001\n[redis]\nurl = "redis://file:1/0"\n'
        '[database]\nchat_url = "postgresql+asyncpg://db/chat"\n[ldap]\nattributes = {mail = "m"}\n'
    )
    env = {
        "PROCALL_SERVER_PORT": "7002",
        "REDIS_URL": "redis://env:2/0",
        "PROCALL_REDIS_SENTINELS": "s1:26379, s2:26379",
        "PROCALL_LDAP_START_TLS": "yes",
    }
    settings = load_settings(config, env)
    assert settings.server.port == 7002
    assert settings.redis.url == "redis://env:2/0"
    assert settings.redis.sentinels == ["s1:26379", "s2:26379"]
    assert settings.database.resolved("chat") == "postgresql+asyncpg://db/chat"
    assert settings.database.resolved("users") == settings.database.url
    assert settings.ldap.attributes == {"mail": "m"}
    assert settings.ldap.start_tls is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[servr]\nport = 1\n", "unknown section [servr]"),
        ("[server]\nprot = 1\n", "unknown setting [server] prot"),
        ('[server]\nport = "80"\n', "setting [server] port must be a int"),
        ("[server\n", "is not valid TOML"),
    ],
)
def test_bad_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        load_settings(config, {})
    assert "\n" not in str(err.value)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*missing.toml"):
        load_settings(tmp_path / "missing.toml", {})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PROCALL_SERVER_PORT must be a int"):
        load_settings(env={"PROCALL_SERVER_PORT": "eighty"})


def test_tls_is_all_three_files_or_an_error(tmp_path: Path) -> None:
    config = tmp_path / "procall.toml"
    config.write_text('[tls]\nca_file = "ca.pem"\nmesh_port = 7443\n')
    with pytest.raises(ConfigError, match="ca_file, cert_file and key_file together"):
        load_settings(config, {})
    env = {"PROCALL_TLS_CERT_FILE": "uc.pem", "PROCALL_TLS_KEY_FILE": "uc.key"}
    settings = load_settings(config, env)
    assert settings.tls.enabled and settings.tls.mesh_port == 7443
    assert not load_settings(env={}).tls.enabled


def test_limits_and_the_audit_databases(tmp_path: Path) -> None:
    from procall.servers.runtime.limits import call_limits

    config = tmp_path / "procall.toml"
    config.write_text(
        "[limits]\nsessions_per_user = 3\nuser_rate = 5\n"
        '[limits.method_message_bytes]\n"procall.api.chat.v1.ChatService/SendMessage" = "65536"\n'
        '[database]\nusers_url = "sqlite+aiosqlite:///users.db"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, env={"PROCALL_LIMITS_STREAM_IDLE_SECONDS": "30"})
    assert settings.limits.sessions_per_user == 3
    assert settings.limits.user_rate == 5.0
    assert settings.limits.stream_idle_seconds == 30.0
    limits = call_limits(settings)
    assert limits.message_limit("procall.api.chat.v1.ChatService/SendMessage") == 65536
    # the Directory's and the UCServers' audit events are read from both databases ...
    assert settings.database.audit_urls() == ["sqlite+aiosqlite:///users.db", settings.database.url]
    # ... unless audit_url puts them in one
    settings.database.audit_url = "sqlite+aiosqlite:///audit.db"
    assert settings.database.audit_urls() == ["sqlite+aiosqlite:///audit.db"]
    settings.limits.method_message_bytes = {"X/Y": "lots"}
    with pytest.raises(ConfigError, match="method_message_bytes"):
        call_limits(settings)
