"""LDAP filters, entry mapping and configuration (no server needed)."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import ldap3
import pytest

from procall.directory.models import SearchField
from procall.settings import LdapSettings
from procall.storage.ldap.config import AttributeMap, LdapConfig, LdapConfigError
from procall.storage.ldap.gateway import LdapGateway
from procall.storage.ldap.mapping import (
    all_of,
    any_of,
    entry_id,
    equals,
    id_filter,
    text_filter,
    user_from_entry,
)


def _config(**overrides: object) -> LdapConfig:
    settings = LdapSettings(base_dn="dc=example,dc=com", admin_group="admins")
    for key, value in overrides.items():
        setattr(settings, key, value)
    return LdapConfig.from_settings(settings)


def test_filter_values_are_escaped() -> None:
    assert equals("sAMAccountName", "*)(uid=*))(|(uid=*") == (
        r"(sAMAccountName=\2a\29\28uid=\2a\29\29\28|\28uid=\2a)"
    )
    assert equals("cn", "a\x00b\\") == r"(cn=a\00b\5c)"
    attrs = AttributeMap.from_settings({})
    name = text_filter(attrs, "*", SearchField.NAME)
    assert name == r"(|(displayName=*\2a*)(sAMAccountName=*\2a*))"
    assert all_of() == "(objectClass=*)" and any_of() == "(!(objectClass=*))"
    assert all_of("(a=1)", "") == "(a=1)"


def test_ids_from_object_guid_or_entry_uuid() -> None:
    guid = uuid.uuid4()
    ad_entry = {"dn": "cn=x", "_raw": {"objectGUID": [guid.bytes_le]}}
    assert entry_id(ad_entry, "objectGUID") == str(guid)
    openldap_entry = {"dn": "cn=x", "entryUUID": ["ABC-1"], "_raw": {"objectGUID": []}}
    assert entry_id(openldap_entry, "objectGUID") == "abc-1"
    assert id_filter("objectGUID", "not-a-uuid") is None
    both = id_filter("objectGUID", str(guid))
    assert both is not None and both.startswith("(|(objectGUID=\\") and str(guid) in both
    assert id_filter("employeeID", "4*2") == r"(employeeID=4\2a2)"


def test_user_mapping_with_ad_attributes() -> None:
    config = _config(home_server_groups={"Berlin": "ucserver-b", "Munich": "ucserver-m"})
    entry = {
        "dn": "cn=Pat,ou=users,dc=example,dc=com",
        "sAMAccountName": ["pat"],
        "displayName": ["Pat Doe"],
        "mail": ["pat@example.com"],
        "memberOf": [
            "CN=Munich,OU=Sites,DC=example,DC=com",
            "cn=admins,ou=groups,dc=example,dc=com",
        ],
        "userAccountControl": ["514"],  # NORMAL_ACCOUNT | ACCOUNTDISABLE
        "_raw": {"objectGUID": [uuid.UUID(int=7).bytes_le]},
    }
    groups = {"cn=munich,ou=sites,dc=example,dc=com": "g-munich"}
    user = user_from_entry(entry, config, group_ids=groups)
    assert user is not None
    assert (user.username, user.display_name, user.mail) == ("pat", "Pat Doe", "pat@example.com")
    assert user.user_id == str(uuid.UUID(int=7))
    assert user.home_server_id == "ucserver-m"
    assert user.group_ids == ("g-munich",)
    assert user.admin and user.disabled
    overridden = user_from_entry(entry, config, group_ids=groups, home_override="uc-x")
    assert overridden is not None and overridden.home_server_id == "uc-x"
    assert user_from_entry({"dn": "cn=x", "_raw": {}}, config, group_ids={}) is None


def test_config_checks_settings() -> None:
    with pytest.raises(LdapConfigError, match="url"):
        _config(url="http://dc1")
    with pytest.raises(LdapConfigError, match="base_dn"):
        LdapConfig.from_settings(LdapSettings())
    with pytest.raises(LdapConfigError, match="unknown field"):
        _config(attributes={"shoe_size": "x"})
    with pytest.raises(LdapConfigError, match="not an attribute name"):
        _config(attributes={"mail": "mail)(x=*"})
    with pytest.raises(LdapConfigError, match="user_filter"):
        _config(user_filter="objectClass=user")
    config = _config(url="ldap://dc1 ldaps://dc2:636", page_size=5000)
    assert config.urls == ("ldap://dc1", "ldaps://dc2:636") and config.page_size == 1000
    assert "dc1" in config.describe() and "password" not in config.describe()


async def test_tls_settings_verify_the_server(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(LdapConfigError, match="ca_file"):
        _config(ca_file=str(tmp_path / "missing.pem"))
    gateway = LdapGateway(
        _config(url="ldap://dc1.example.com", start_tls=True, ca_file=str(ca_file))
    )
    try:
        server = gateway._make_server()
        assert isinstance(server, ldap3.Server)
        assert server.tls is not None
        assert server.tls.validate == ssl.CERT_REQUIRED
        assert server.tls.ca_certs_file == str(ca_file)
        pool = LdapGateway(_config(url="ldaps://dc1 ldaps://dc2"))._make_server()
        assert isinstance(pool, ldap3.ServerPool) and len(pool.servers) == 2
        assert all(s.ssl for s in pool.servers)
    finally:
        await gateway.close()
