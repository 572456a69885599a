"""The LDAP backend's configuration: connection options and the attribute map.

The attribute map says which LDAP attribute holds each procall field; its defaults
are Active Directory's names. ``user_id`` defaults to ``objectGUID`` and falls back
to ``entryUUID`` for entries that have no GUID (OpenLDAP), so both work unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from procall.settings import LdapSettings

__all__ = ["DEFAULT_ATTRIBUTES", "AttributeMap", "LdapConfig", "LdapConfigError"]

#: procall field -> LDAP attribute (Active Directory names).
DEFAULT_ATTRIBUTES: dict[str, str] = {
    "user_id": "objectGUID",
    "username": "sAMAccountName",
    "principal_name": "userPrincipalName",
    "display_name": "displayName",
    "mail": "mail",
    "phone_number": "telephoneNumber",
    "department": "department",
    "member_of": "memberOf",
    "account_control": "userAccountControl",
    "group_id": "objectGUID",
    "group_name": "cn",
    "group_description": "description",
    "group_member": "member",
}

_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}|[0-9]+(\.[0-9]+)+")


class LdapConfigError(Exception):
    """The LDAP settings cannot work; the message names the setting."""


@dataclass(frozen=True)
class AttributeMap:
    """LDAP attribute names for procall's fields (see ``DEFAULT_ATTRIBUTES``)."""

    user_id: str
    username: str
    principal_name: str
    display_name: str
    mail: str
    phone_number: str
    department: str
    member_of: str
    account_control: str
    group_id: str
    group_name: str
    group_description: str
    group_member: str

    @classmethod
    def from_settings(cls, overrides: Mapping[str, str]) -> AttributeMap:
        """The defaults with ``overrides`` applied; unknown fields and bad names are errors."""
        unknown = sorted(set(overrides) - set(DEFAULT_ATTRIBUTES))
        if unknown:
            raise LdapConfigError(
                f"[ldap] attributes: unknown field {unknown[0]!r} "
                f"(known: {', '.join(DEFAULT_ATTRIBUTES)})"
            )
        merged = {**DEFAULT_ATTRIBUTES, **overrides}
        for name, attribute in merged.items():
            if not _ATTRIBUTE.fullmatch(attribute):
                raise LdapConfigError(
                    f"[ldap] attributes: {name} = {attribute!r} is not an attribute name"
                )
        return cls(**merged)


@dataclass(frozen=True)
class LdapConfig:
    """Everything the LDAP backend needs, checked once at start."""

    urls: tuple[str, ...]
    bind_dn: str
    bind_password: str
    users_dn: str
    groups_dn: str
    user_filter: str
    group_filter: str
    attributes: AttributeMap
    home_server_attribute: str = ""
    home_server_groups: tuple[tuple[str, str], ...] = ()
    admin_group: str = ""
    start_tls: bool = False
    ca_file: str = ""
    connect_timeout: float = 3.0
    receive_timeout: float = 5.0
    page_size: int = 500

    @classmethod
    def from_settings(cls, settings: LdapSettings) -> LdapConfig:
        """Check ``[ldap]`` settings and build the config."""
        urls = tuple(part for part in re.split(r"[\s,]+", settings.url) if part)
        if not urls or not all(u.lower().startswith(("ldap://", "ldaps://")) for u in urls):
            raise LdapConfigError("[ldap] url must be one or more ldap:// or ldaps:// URLs")
        users_dn = settings.users_dn or settings.base_dn
        groups_dn = settings.groups_dn or settings.base_dn
        if not users_dn:
            raise LdapConfigError("[ldap] base_dn (or users_dn) is required")
        for name, value in (("user_filter", settings.user_filter),
                            ("group_filter", settings.group_filter)):  # fmt: skip
            if value and not (value.startswith("(") and value.endswith(")")):
                raise LdapConfigError(f"[ldap] {name} must be a filter in parentheses")
        if settings.home_server_attribute and not _ATTRIBUTE.fullmatch(
            settings.home_server_attribute
        ):
            raise LdapConfigError("[ldap] home_server_attribute is not an attribute name")
        if settings.ca_file and not os.path.isfile(settings.ca_file):
            raise LdapConfigError(f"[ldap] ca_file {settings.ca_file} does not exist")
        if settings.page_size < 1:
            raise LdapConfigError("[ldap] page_size must be positive")
        return cls(
            urls=urls,
            bind_dn=settings.bind_dn,
            bind_password=settings.bind_password,
            users_dn=users_dn,
            groups_dn=groups_dn,
            user_filter=settings.user_filter,
            group_filter=settings.group_filter,
            attributes=AttributeMap.from_settings(settings.attributes),
            home_server_attribute=settings.home_server_attribute,
            home_server_groups=tuple(settings.home_server_groups.items()),
            admin_group=settings.admin_group,
            start_tls=settings.start_tls,
            ca_file=settings.ca_file,
            connect_timeout=settings.connect_timeout,
            receive_timeout=settings.receive_timeout,
            page_size=min(settings.page_size, 1000),
        )

    def describe(self) -> str:
        """Where the directory is, without secrets."""
        return f"LDAP {' '.join(self.urls)} ({self.users_dn})"
