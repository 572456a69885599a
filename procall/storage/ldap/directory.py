"""Users and groups from Active Directory / LDAP (read-only), logins by user bind.

``LdapUserDirectory`` implements the Directory's ``UserReader``, ``Authenticator``
and ``HomeServerStore`` ports:

* logins search the account by ``sAMAccountName`` or ``userPrincipalName`` with the
  service account, then bind as the entry's DN with the password (AD also accepts
  ``user@domain`` bind names, OpenLDAP does not; the DN works on both);
* listings page through LDAP simple paged results. LDAP paging cookies belong to one
  connection, so the page token carries a scan position instead: the offset of the
  next entry and the name of the entry before it. A page re-scans up to its offset
  (cheap, only names are compared) and checks that name; when the directory changed
  in between, it finds the position again by that name. Pages follow the server's
  stable order, not an alphabetical one. Listing by home server filters here, not in
  LDAP (assignments may live in the side database), so it reads every user entry;
* home servers: an assignment made through procall (kept in the SQL side database)
  wins, else the configured attribute, else the first matching configured group.
  Removing the assignment (``""``) falls back to what the directory says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from procall.directory.models import Account, Group, HomeServerAssignment, User
from procall.directory.ports import UserQuery
from procall.paging import Cursor, bad_page_token
from procall.storage.ldap.config import LdapConfig
from procall.storage.ldap.gateway import LdapGateway, LdapSession
from procall.storage.ldap.mapping import (
    Entry,
    all_of,
    any_of,
    entry_id,
    equals,
    first_value,
    group_attributes,
    group_from_entry,
    id_attributes,
    id_filter,
    normalize_dn,
    text_filter,
    user_attributes,
    user_from_entry,
)

__all__ = ["HomeServerOverrides", "LdapUserDirectory"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_GROUP_CACHE_SECONDS = 60.0
_GROUP_MISS_REFRESH_SECONDS = 5.0
_IDS_PER_FILTER = 50


class HomeServerOverrides(Protocol):
    """Home-server assignments made through procall (the SQL side database)."""

    async def home_servers_of(self, user_ids: Sequence[str]) -> dict[str, str]:
        """The assigned home server of each user that has one."""
        ...

    async def set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        """Record assignments ("" removes one)."""
        ...


@dataclass
class _Scan:
    """Where a paged listing stands: the next entry's offset and the name before it."""

    items: list[object]
    next_offset: int | None
    key_before_next: str


def _scan_cursor(cursor: Cursor | None) -> tuple[int, str]:
    if cursor is None:
        return 0, ""
    if (
        len(cursor) != 2
        or not isinstance(cursor[0], int)
        or not isinstance(cursor[1], str)
        or cursor[0] < 1
    ):
        raise bad_page_token()
    return cursor[0], cursor[1]


class LdapUserDirectory:
    """Read-only users and groups from LDAP; logins by binding as the user."""

    def __init__(
        self,
        gateway: LdapGateway,
        overrides: HomeServerOverrides,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway = gateway
        self._config: LdapConfig = gateway.config
        self._attrs = gateway.config.attributes
        self._overrides = overrides
        self._clock = clock
        self._group_ids: dict[str, str] = {}
        self._groups_loaded_at: float | None = None

    # -- entries to users -----------------------------------------------------------------

    def _user_filter(self, *parts: str) -> str:
        return all_of(self._config.user_filter, *parts)

    async def _group_ids_for(self, entries: Sequence[Entry]) -> dict[str, str]:
        now = self._clock()
        loaded = self._groups_loaded_at
        stale = loaded is None or now - loaded > _GROUP_CACHE_SECONDS
        if not stale and loaded is not None and now - loaded > _GROUP_MISS_REFRESH_SECONDS:
            wanted = {
                normalize_dn(str(dn))
                for entry in entries
                for key, values in entry.items()
                if key.lower() == self._attrs.member_of.lower()
                for dn in (values or [])
            }
            stale = bool(wanted - self._group_ids.keys())
        if stale:
            await self._load_groups()
        return self._group_ids

    async def _load_groups(self) -> None:
        attributes = [*id_attributes(self._attrs.group_id)]
        ids: dict[str, str] = {}
        async with self._gateway.session() as session:
            cookie: bytes | None = None
            while True:
                entries, cookie = await session.search_page(
                    self._config.groups_dn,
                    self._config.group_filter or "(objectClass=*)",
                    attributes,
                    page_size=self._config.page_size,
                    cookie=cookie,
                )
                for entry in entries:
                    group_id = entry_id(entry, self._attrs.group_id)
                    if group_id:
                        ids[normalize_dn(str(entry["dn"]))] = group_id
                if not cookie:
                    break
        self._group_ids = ids
        self._groups_loaded_at = self._clock()

    async def _users(self, entries: Sequence[Entry]) -> list[User | None]:
        if not entries:
            return []
        group_ids = await self._group_ids_for(entries)
        ids = [entry_id(entry, self._attrs.user_id) for entry in entries]
        overrides = await self._overrides.home_servers_of([i for i in ids if i])
        return [
            user_from_entry(
                entry, self._config, group_ids=group_ids, home_override=overrides.get(i, "")
            )
            for entry, i in zip(entries, ids, strict=True)
        ]

    async def _find_users(self, search_filter: str, limit: int) -> list[tuple[User, str]]:
        """Up to ``limit`` users matching, with their DNs (small lookups, one page)."""
        attributes = user_attributes(self._config)

        async def search(session: LdapSession) -> Sequence[Entry]:
            entries, cookie = await session.search_page(
                self._config.users_dn,
                self._user_filter(search_filter),
                attributes,
                page_size=limit,
                cookie=None,
            )
            await session.abandon(self._config.users_dn, self._user_filter(search_filter), cookie)
            return entries

        async with self._gateway.session() as session:
            entries = await search(session)
        users = await self._users(entries)
        return [
            (user, str(entry["dn"]))
            for user, entry in zip(users, entries, strict=True)
            if user is not None
        ]

    # -- UserReader -----------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User | None:
        """The user with this id (``objectGUID`` / ``entryUUID``), or ``None``."""
        condition = id_filter(self._attrs.user_id, user_id)
        if condition is None:
            return None
        found = await self._find_users(condition, 2)
        return found[0][0] if len(found) == 1 else None

    async def get_user_by_username(self, username: str) -> User | None:
        """The user with this ``sAMAccountName``, or ``None``."""
        found = await self._find_users(equals(self._attrs.username, username), 2)
        return found[0][0] if len(found) == 1 else None

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The existing users among ``user_ids`` (looked up in batches)."""
        unique = list(dict.fromkeys(user_ids))
        found: dict[str, User] = {}
        for start in range(0, len(unique), _IDS_PER_FILTER):
            conditions = [
                condition
                for user_id in unique[start : start + _IDS_PER_FILTER]
                if (condition := id_filter(self._attrs.user_id, user_id)) is not None
            ]
            if not conditions:
                continue
            for user, _ in await self._find_users(any_of(*conditions), _IDS_PER_FILTER * 2):
                found[user.user_id] = user
        return {user_id: found[user_id] for user_id in unique if user_id in found}

    async def list_users(
        self, query: UserQuery, cursor: Cursor | None, limit: int
    ) -> tuple[list[User], Cursor | None]:
        """A page of users in the server's order (see the module doc for the token)."""
        parts: list[str] = []
        if query.text:
            parts.append(text_filter(self._attrs, query.text, query.field))
        if query.group_id:
            group_dn = await self._group_dn(query.group_id)
            if group_dn is None:
                return [], None
            parts.append(equals(self._attrs.member_of, group_dn))
        wanted_home = query.home_server_id

        def keep(item: object) -> bool:
            return isinstance(item, User) and (
                not wanted_home or item.home_server_id == wanted_home
            )

        scan = await self._scan(
            self._config.users_dn,
            self._user_filter(*parts),
            user_attributes(self._config),
            self._attrs.username,
            self._users,
            keep,
            cursor,
            limit,
        )
        users = [item for item in scan.items if isinstance(item, User)]
        if scan.next_offset is None:
            return users, None
        return users, (scan.next_offset, scan.key_before_next)

    async def _group_entries(self, search_filter: str, limit: int) -> Sequence[Entry]:
        async with self._gateway.session() as session:
            entries, cookie = await session.search_page(
                self._config.groups_dn,
                search_filter,
                group_attributes(self._attrs, members=True),
                page_size=limit,
                cookie=None,
            )
            await session.abandon(self._config.groups_dn, search_filter, cookie)
        return entries

    async def _group_dn(self, group_id: str) -> str | None:
        condition = id_filter(self._attrs.group_id, group_id)
        if condition is None:
            return None
        entries = await self._group_entries(all_of(self._config.group_filter, condition), 2)
        return str(entries[0]["dn"]) if len(entries) == 1 else None

    async def get_group(self, group_id: str) -> Group | None:
        """The group with this id, or ``None``."""
        condition = id_filter(self._attrs.group_id, group_id)
        if condition is None:
            return None
        entries = await self._group_entries(all_of(self._config.group_filter, condition), 2)
        return group_from_entry(entries[0], self._attrs) if len(entries) == 1 else None

    async def list_groups(
        self, cursor: Cursor | None, limit: int
    ) -> tuple[list[Group], Cursor | None]:
        """A page of groups in the server's order."""

        async def convert(entries: Sequence[Entry]) -> list[Group | None]:
            return [group_from_entry(entry, self._attrs) for entry in entries]

        scan = await self._scan(
            self._config.groups_dn,
            self._config.group_filter or "(objectClass=*)",
            group_attributes(self._attrs, members=True),
            self._attrs.group_name,
            convert,
            lambda item: isinstance(item, Group),
            cursor,
            limit,
        )
        groups = [item for item in scan.items if isinstance(item, Group)]
        if scan.next_offset is None:
            return groups, None
        return groups, (scan.next_offset, scan.key_before_next)

    # -- the paged scan -------------------------------------------------------------------

    async def _scan(
        self,
        base: str,
        search_filter: str,
        attributes: list[str],
        key_attribute: str,
        convert: Callable[[Sequence[Entry]], Awaitable[Sequence[object | None]]],
        keep: Callable[[object], bool],
        cursor: Cursor | None,
        limit: int,
    ) -> _Scan:
        start, key_before = _scan_cursor(cursor)
        if start:
            result = await self._scan_pass(
                base, search_filter, attributes, key_attribute, convert, keep, limit,
                start=start, verify_key=key_before,
            )  # fmt: skip
            if result is not None:
                return result
            # the directory changed since the last page: find the position again by name
            result = await self._scan_pass(
                base, search_filter, attributes, key_attribute, convert, keep, limit,
                start=None, verify_key=key_before,
            )  # fmt: skip
            if result is not None:
                return result
        fallback = await self._scan_pass(
            base, search_filter, attributes, key_attribute, convert, keep, limit,
            start=start, verify_key="",
        )  # fmt: skip
        assert fallback is not None
        return fallback

    async def _scan_pass(
        self,
        base: str,
        search_filter: str,
        attributes: list[str],
        key_attribute: str,
        convert: Callable[[Sequence[Entry]], Awaitable[Sequence[object | None]]],
        keep: Callable[[object], bool],
        limit: int,
        *,
        start: int | None,
        verify_key: str,
    ) -> _Scan | None:
        """One pass; ``start=None`` resumes after the entry named ``verify_key``.

        Returns ``None`` when the entry before ``start`` is not ``verify_key`` (or, by
        name, when no entry has that name).
        """
        items: list[object] = []
        index = 0
        previous_key = ""
        begin = start
        cookie: bytes | None = None
        async with self._gateway.session() as session:
            while True:
                entries, cookie = await session.search_page(
                    base, search_filter, attributes,
                    page_size=self._config.page_size, cookie=cookie,
                )  # fmt: skip
                keys = [first_value(entry, key_attribute).lower() for entry in entries]
                if begin is None:
                    for offset, key in enumerate(keys):
                        if key == verify_key:
                            begin = index + offset + 1
                            break
                elif verify_key and index <= begin - 1 < index + len(entries):
                    if keys[begin - 1 - index] != verify_key:
                        await session.abandon(base, search_filter, cookie)
                        return None
                if begin is not None and index + len(entries) > begin:
                    skip = max(0, begin - index)
                    converted = await convert(entries[skip:])
                    for offset, item in enumerate(converted):
                        position = index + skip + offset
                        if item is not None and keep(item):
                            if len(items) == limit:
                                await session.abandon(base, search_filter, cookie)
                                before = (
                                    keys[position - index - 1] if position > index else previous_key
                                )
                                return _Scan(items, position, before)
                            items.append(item)
                previous_key = keys[-1] if keys else previous_key
                index += len(entries)
                if not cookie:
                    break
        if begin is None or (start is not None and verify_key and begin > index):
            return None
        return _Scan(items, None, "")

    # -- Authenticator ----------------------------------------------------------------------

    async def find_account(self, login: str) -> Account | None:
        """The account whose ``sAMAccountName`` or ``userPrincipalName`` is ``login``."""
        condition = any_of(
            equals(self._attrs.username, login), equals(self._attrs.principal_name, login)
        )
        found = await self._find_users(condition, 2)
        if len(found) != 1:
            if found:
                _log.warning("login name matches %d LDAP entries; refusing it", len(found))
            return None
        user, dn = found[0]
        return Account(user, dn)

    async def check_password(self, account: Account | None, password: str) -> bool:
        """Bind as the account's DN with ``password``."""
        if account is None:
            return False
        return await self._gateway.check_password(account.credential, password)

    # -- HomeServerStore ------------------------------------------------------------------

    async def set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        """Record home-server assignments in the side database."""
        return await self._overrides.set_home_servers(assignments)
