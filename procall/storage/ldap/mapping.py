"""From LDAP entries to procall users and groups, and from queries to LDAP filters.

Every value that goes into a filter passes ``escape_filter_chars`` (``*``, ``(``,
``)``, ``\\``, NUL), so searched text is always literal: ``*)(uid=*))(|(uid=*`` is
looked for as those characters and finds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.conv import escape_bytes, escape_filter_chars
from ldap3.utils.dn import parse_dn

from procall.directory.models import Group, SearchField, User
from procall.storage.ldap.config import AttributeMap, LdapConfig

__all__ = [
    "ACCOUNT_DISABLED",
    "Entry",
    "all_of",
    "any_of",
    "contains",
    "entry_id",
    "equals",
    "first_value",
    "group_from_entry",
    "group_attributes",
    "id_attributes",
    "id_filter",
    "normalize_dn",
    "rdn_value",
    "text_filter",
    "user_attributes",
    "user_from_entry",
]

#: ``userAccountControl`` bit of a disabled AD account.
ACCOUNT_DISABLED = 0x2

#: One search result: attribute name -> values, plus "dn" and "_raw" (undecoded values).
Entry = Mapping[str, Any]


def equals(attribute: str, value: str) -> str:
    """``(attribute=value)`` with the value escaped."""
    return f"({attribute}={escape_filter_chars(value)})"


def contains(attribute: str, value: str) -> str:
    """``(attribute=*value*)`` with the value escaped (a literal substring)."""
    return f"({attribute}=*{escape_filter_chars(value)}*)"


def all_of(*parts: str) -> str:
    """``(&...)`` of the non-empty parts (every entry when there are none)."""
    kept = [part for part in parts if part]
    if not kept:
        return "(objectClass=*)"
    return kept[0] if len(kept) == 1 else f"(&{''.join(kept)})"


def any_of(*parts: str) -> str:
    """``(|...)`` of the non-empty parts (no entry when there are none)."""
    kept = [part for part in parts if part]
    if not kept:
        return "(!(objectClass=*))"
    return kept[0] if len(kept) == 1 else f"(|{''.join(kept)})"


def _value(entry: Entry, attribute: str) -> list[Any]:
    lowered = attribute.lower()
    for key, values in entry.items():
        if key.lower() == lowered and key not in ("dn", "_raw"):
            if isinstance(values, list):
                return values
            return [] if values is None else [values]
    return []


def first_value(entry: Entry, attribute: str) -> str:
    """The first value of ``attribute`` as text ("" when absent)."""
    for value in _value(entry, attribute):
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value)
    return ""


def _raw(entry: Entry, attribute: str) -> bytes:
    raw = entry.get("_raw") or {}
    lowered = attribute.lower()
    for key, values in raw.items():
        if key.lower() == lowered and values:
            return bytes(values[0])
    return b""


def entry_id(entry: Entry, attribute: str) -> str:
    """The stable id of an entry: its ``objectGUID`` (else ``entryUUID``) or a custom attribute."""
    if attribute.lower() == "objectguid":
        guid = _raw(entry, "objectGUID")
        if len(guid) == 16:
            return str(uuid.UUID(bytes_le=guid))
        return first_value(entry, "entryUUID").lower()
    return first_value(entry, attribute)


def id_filter(attribute: str, value: str) -> str | None:
    """A filter for the entry with this id; ``None`` when ``value`` cannot be one."""
    if attribute.lower() == "objectguid":
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return None
        return any_of(
            f"(objectGUID={escape_bytes(parsed.bytes_le)})", equals("entryUUID", str(parsed))
        )
    return equals(attribute, value)


def id_attributes(attribute: str) -> list[str]:
    """The attributes to request to learn an entry's id."""
    return ["objectGUID", "entryUUID"] if attribute.lower() == "objectguid" else [attribute]


def user_attributes(config: LdapConfig) -> list[str]:
    """Every attribute a user entry is read with (``memberOf`` named: it is operational)."""
    a = config.attributes
    names = [
        *id_attributes(a.user_id),
        a.username,
        a.principal_name,
        a.display_name,
        a.mail,
        a.phone_number,
        a.department,
        a.member_of,
        a.account_control,
    ]
    if config.home_server_attribute:
        names.append(config.home_server_attribute)
    return list(dict.fromkeys(names))


def group_attributes(attributes: AttributeMap, *, members: bool) -> list[str]:
    """The attributes a group entry is read with (members only when they are counted)."""
    names = [*id_attributes(attributes.group_id), attributes.group_name]
    names.append(attributes.group_description)
    if members:
        names.append(attributes.group_member)
    return list(dict.fromkeys(names))


def normalize_dn(dn: str) -> str:
    """A DN compared case- and blank-insensitively."""
    try:
        return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _ in parse_dn(dn))
    except LDAPInvalidDnError:
        return dn.strip().lower()


def rdn_value(dn: str) -> str:
    """The value of a DN's first RDN (``cn=sales,ou=groups,...`` -> ``sales``)."""
    try:
        parts = parse_dn(dn)
    except LDAPInvalidDnError:
        return ""
    return parts[0][1] if parts else ""


def text_filter(attributes: AttributeMap, text: str, field: SearchField) -> str:
    """Users whose ``field`` contains ``text`` (the server's matching rules decide case)."""
    name = any_of(contains(attributes.display_name, text), contains(attributes.username, text))
    mail = contains(attributes.mail, text)
    phone = contains(attributes.phone_number, text)
    department = contains(attributes.department, text)
    if field is SearchField.NAME:
        return name
    if field is SearchField.MAIL:
        return mail
    if field is SearchField.PHONE_NUMBER:
        return phone
    if field is SearchField.DEPARTMENT:
        return department
    return any_of(name, mail, phone, department)


def _member_of(entry: Entry, attribute: str) -> list[str]:
    return [str(value) for value in _value(entry, attribute)]


def _in_group(group: str, member_of: Sequence[str]) -> bool:
    """Whether ``group`` (a name or a DN) is among the ``memberOf`` DNs."""
    if "=" in group:
        wanted = normalize_dn(group)
        return any(normalize_dn(dn) == wanted for dn in member_of)
    lowered = group.strip().lower()
    return any(rdn_value(dn).lower() == lowered for dn in member_of)


def user_from_entry(
    entry: Entry,
    config: LdapConfig,
    *,
    group_ids: Mapping[str, str],
    home_override: str = "",
) -> User | None:
    """The user of an entry (``None`` without username or id).

    ``group_ids`` maps normalized group DNs to group ids; the home server is the
    override assigned through procall, else the configured attribute, else the first
    configured group the user is a member of.
    """
    a = config.attributes
    user_id = entry_id(entry, a.user_id)
    username = first_value(entry, a.username)
    if not user_id or not username:
        return None
    member_of = _member_of(entry, a.member_of)
    home = home_override
    if not home and config.home_server_attribute:
        home = first_value(entry, config.home_server_attribute)
    if not home:
        for group, server in config.home_server_groups:
            if _in_group(group, member_of):
                home = server
                break
    control = first_value(entry, a.account_control)
    disabled = control.isdigit() and bool(int(control) & ACCOUNT_DISABLED)
    ids = [group_ids[key] for key in map(normalize_dn, member_of) if key in group_ids]
    return User(
        user_id=user_id,
        username=username,
        display_name=first_value(entry, a.display_name) or username,
        mail=first_value(entry, a.mail),
        phone_number=first_value(entry, a.phone_number),
        department=first_value(entry, a.department),
        home_server_id=home,
        group_ids=tuple(sorted(set(ids))),
        admin=bool(config.admin_group) and _in_group(config.admin_group, member_of),
        disabled=disabled,
        principal_name=first_value(entry, a.principal_name),
    )


def group_from_entry(entry: Entry, attributes: AttributeMap) -> Group | None:
    """The group of an entry (``None`` without id or name)."""
    group_id = entry_id(entry, attributes.group_id)
    name = first_value(entry, attributes.group_name) or rdn_value(str(entry.get("dn", "")))
    if not group_id or not name:
        return None
    return Group(
        group_id=group_id,
        name=name,
        description=first_value(entry, attributes.group_description),
        member_count=len(_value(entry, attributes.group_member)),
    )
