"""Active Directory / LDAP backend of the Directory (ldap3, read-only).

``LdapConfig`` checks the ``[ldap]`` settings, ``LdapGateway`` runs ldap3 in threads
with bounded waits, and ``LdapUserDirectory`` answers users, groups and logins.
Delegations, pick-up groups and home-server assignments made through procall live
in the Directory's SQL side database (``procall.storage.sql``), so they work with AD.
"""

from procall.storage.ldap.config import (
    DEFAULT_ATTRIBUTES,
    AttributeMap,
    LdapConfig,
    LdapConfigError,
)
from procall.storage.ldap.directory import HomeServerOverrides, LdapUserDirectory
from procall.storage.ldap.gateway import BACKEND_NAME, LdapGateway

__all__ = [
    "BACKEND_NAME",
    "DEFAULT_ATTRIBUTES",
    "AttributeMap",
    "HomeServerOverrides",
    "LdapConfig",
    "LdapConfigError",
    "LdapGateway",
    "LdapUserDirectory",
]
