"""The Directory's use-cases: authentication, users, groups and home servers.

``Directory`` validates every request, applies paging and throttling, and talks to
the backend only through the ports of ``procall.directory.ports``. A read-only
backend (Active Directory / LDAP) has no ``UserWriter``: user, group and password
changes answer FAILED_PRECONDITION (``READ_ONLY_DIRECTORY``), while home-server
assignments still work (the LDAP backend keeps them in its SQL side database).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from procall.audit import AuditEvent, AuditLog, AuditOutcome
from procall.directory.models import (
    USER_MUTABLE_FIELDS,
    Account,
    BackendInfo,
    BackendKind,
    Group,
    HomeServerAssignment,
    NewGroup,
    NewUser,
    Page,
    SearchField,
    User,
    UserChanges,
)
from procall.directory.passwords import PasswordHasher, PasswordPolicy
from procall.directory.ports import (
    Authenticator,
    HomeServerStore,
    UserQuery,
    UserReader,
    UserWriter,
)
from procall.directory.throttle import LoginThrottle
from procall.directory.validation import (
    check_display_name,
    check_group_name,
    check_home_server_id,
    check_mail,
    check_phone_number,
    check_principal_name,
    check_text,
    check_username,
    has_control_chars,
    is_searchable,
    normalize_key,
)
from procall.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from procall.paging import decode_page_token, encode_page_token, page_size

__all__ = ["MAX_BATCH_ASSIGNMENTS", "Directory", "plausible_id"]

#: Most assignments one ``BatchSetHomeServers`` may carry.
MAX_BATCH_ASSIGNMENTS = 10_000
_MAX_ID_CHARS = 128


def plausible_id(value: str) -> bool:
    """Whether ``value`` could be an id at all (short, no control characters)."""
    return 0 < len(value) <= _MAX_ID_CHARS and not has_control_chars(value)


def _user_not_found(user_id: str) -> NotFound:
    return NotFound("user not found", metadata={"user_id": user_id[:_MAX_ID_CHARS]})


def _group_not_found(group_id: str) -> NotFound:
    return NotFound("group not found", metadata={"group_id": group_id[:_MAX_ID_CHARS]})


class Directory:
    """Users, groups, credentials and home servers, over one backend."""

    def __init__(
        self,
        *,
        info: BackendInfo,
        reader: UserReader,
        authenticator: Authenticator,
        home_servers: HomeServerStore,
        writer: UserWriter | None,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        policy: PasswordPolicy | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``audit`` records failed logins (``auth.login_failed``)."""
        self.info = info
        self._reader = reader
        self._auth = authenticator
        self._home_servers = home_servers
        self._writer = writer
        self._hasher = hasher
        self._throttle = throttle
        self._policy = policy or PasswordPolicy()
        self._audit = audit
        self._clock = clock

    # -- authentication -------------------------------------------------------------------

    async def authenticate(self, login: str, password: str, source: str = "") -> User:
        """The user whose login name and password these are.

        Unknown names, wrong passwords and disabled accounts all give the same
        ``Unauthenticated``; too many failures from ``source`` (the client's network
        address), or from everywhere together, give ``ResourceExhausted``.
        """
        login = login.strip()
        source = source[:128]
        keys = [f"login:{normalize_key(login)[:256]}"]
        account = None
        try:
            self._throttle.check(keys, source)
            if is_searchable(login) and 0 < len(password) <= self._policy.max_chars:
                account = await self._auth.find_account(login)
            if account is not None:
                keys.append(f"user:{account.user.user_id}")
                self._throttle.check(keys, source)
        except ResourceExhausted:
            await self._failed_login(login, account, source, AuditOutcome.DENIED, "RATE_LIMITED")
            raise
        usable = account if account is not None and not account.user.disabled else None
        if usable is None or not await self._auth.check_password(usable, password):
            if usable is None and account is not None:
                await self._auth.check_password(None, password)  # same time as a wrong password
            self._throttle.failure(keys, source)
            await self._failed_login(login, account, source, AuditOutcome.FAILED, "BAD_CREDENTIALS")
            raise Unauthenticated("wrong username or password")
        self._throttle.success(keys, source)
        return usable.user

    async def _failed_login(
        self,
        login: str,
        account: Account | None,
        source: str,
        outcome: AuditOutcome,
        reason: str,
    ) -> None:
        """Record a refused login: the name tried (never the password), the account it
        named, if any, and where it came from."""
        if self._audit is None:
            return
        event = AuditEvent(
            time=self._clock(),
            actor=login[:64] or "anonymous",
            action="auth.login_failed",
            outcome=outcome,
            subject=account.user.user_id if account is not None else "",
            source=source,
            detail={"reason": reason},
        )
        try:
            await self._audit.record(event)
        except Exception:  # the audit log never fails a login
            pass

    # -- reading users --------------------------------------------------------------------

    async def get_user(self, user_id: str = "", username: str = "") -> User:
        """One user by id, or by login name when no id is given."""
        if user_id:
            user = await self._reader.get_user(user_id) if plausible_id(user_id) else None
            if user is None:
                raise _user_not_found(user_id)
            return user
        if username:
            name = username.strip()
            found = await self._reader.get_user_by_username(name) if is_searchable(name) else None
            if found is None:
                raise NotFound("user not found", metadata={"username": name[:64]})
            return found
        raise InvalidArgument.field("user_id", "one of user_id and username is required")

    async def list_users(
        self, requested_size: int, page_token: str, home_server_id: str = ""
    ) -> Page[User]:
        """All users (or those homed on one server), by username, paged."""
        size = page_size(requested_size)
        scope = {"home_server_id": home_server_id}
        cursor = decode_page_token(page_token, "users", scope)
        if home_server_id and not is_searchable(home_server_id):
            return Page([])
        users, following = await self._reader.list_users(
            UserQuery(home_server_id=home_server_id), cursor, size
        )
        return Page(users, encode_page_token("users", scope, following) if following else "")

    async def search_users(
        self, query: str, field: SearchField, requested_size: int, page_token: str
    ) -> Page[User]:
        """Users whose ``field`` contains ``query`` (literally, ignoring case), paged."""
        text = query.strip()
        if not text:
            raise InvalidArgument.field("query", "is required")
        size = page_size(requested_size)
        scope = {"query": text, "field": field.value}
        cursor = decode_page_token(page_token, "search", scope)
        if not is_searchable(text):
            return Page([])  # nothing stored can contain it; the backend is not asked
        users, following = await self._reader.list_users(
            UserQuery(text=text, field=field), cursor, size
        )
        return Page(users, encode_page_token("search", scope, following) if following else "")

    # -- changing users -------------------------------------------------------------------

    def _writable(self) -> UserWriter:
        if self._writer is None:
            raise FailedPrecondition(
                "the directory is managed in Active Directory / LDAP and is read-only here; "
                "change users and groups there",
                reason="READ_ONLY_DIRECTORY",
            )
        return self._writer

    async def _checked_group_ids(self, field: str, group_ids: Sequence[str]) -> tuple[str, ...]:
        unique = tuple(dict.fromkeys(group_ids))
        for group_id in unique:
            group = await self._reader.get_group(group_id) if plausible_id(group_id) else None
            if group is None:
                raise InvalidArgument.field(field, f"group {group_id[:_MAX_ID_CHARS]!r} not found")
        return unique

    async def _checked_user(
        self, user: NewUser, fields: Sequence[str]
    ) -> dict[str, str | bool | tuple[str, ...]]:
        checked: dict[str, str | bool | tuple[str, ...]] = {}
        for name in fields:
            where = f"user.{name}"
            value = getattr(user, name)
            if name == "username":
                checked[name] = check_username(where, value)
            elif name == "display_name":
                checked[name] = check_display_name(where, value)
            elif name == "mail":
                checked[name] = check_mail(where, value)
            elif name == "principal_name":
                checked[name] = check_principal_name(where, value)
            elif name == "phone_number":
                checked[name] = check_phone_number(where, value)
            elif name == "department":
                checked[name] = check_text(where, value, max_chars=128)
            elif name == "home_server_id":
                checked[name] = check_home_server_id(where, value)
            elif name == "group_ids":
                checked[name] = await self._checked_group_ids(where, value)
            else:  # admin, disabled
                checked[name] = bool(value)
        return checked

    async def create_user(self, user: NewUser, password: str = "") -> User:
        """Create a user, with a password when one is given."""
        writer = self._writable()
        checked = await self._checked_user(user, USER_MUTABLE_FIELDS)
        if password:
            self._policy.check("password", password)
        new_user = replace(user, **cast(dict[str, Any], checked))
        password_hash = await self._hasher.hash(password) if password else ""
        return await writer.create_user(new_user, password_hash)

    async def update_user(
        self, user_id: str, user: NewUser, mask: Sequence[str], etag: str = ""
    ) -> User:
        """Change the fields named in ``mask`` (all mutable fields when empty); with ``etag``,
        only if the user did not change since (ABORTED otherwise)."""
        writer = self._writable()
        if not user_id:
            raise InvalidArgument.field("user.user_id", "is required")
        paths = tuple(dict.fromkeys(path.strip() for path in mask)) or USER_MUTABLE_FIELDS
        unknown = [path for path in paths if path not in USER_MUTABLE_FIELDS]
        if unknown:
            raise InvalidArgument.field(
                "update_mask",
                f"unknown or read-only field {unknown[0][:64]!r}; "
                f"writable: {', '.join(USER_MUTABLE_FIELDS)}",
            )
        if not plausible_id(user_id):
            raise _user_not_found(user_id)
        checked = await self._checked_user(user, paths)
        return await writer.update_user(user_id, UserChanges(checked, expected_etag=etag))

    async def delete_user(self, user_id: str) -> None:
        """Delete a user with memberships, delegations and pick-up memberships."""
        writer = self._writable()
        if not user_id:
            raise InvalidArgument.field("user_id", "is required")
        if not plausible_id(user_id):
            raise _user_not_found(user_id)
        await writer.delete_user(user_id)

    async def set_password(self, user_id: str, password: str) -> None:
        """Replace a user's password."""
        writer = self._writable()
        if not user_id:
            raise InvalidArgument.field("user_id", "is required")
        self._policy.check("password", password)
        if not plausible_id(user_id):
            raise _user_not_found(user_id)
        await writer.set_password_hash(user_id, await self._hasher.hash(password))

    async def change_own_password(self, user_id: str, old_password: str, password: str) -> None:
        """A user replaces their own password, proving the current one first (throttled
        like a login: a stolen session cannot try passwords unboundedly)."""
        if not old_password:
            raise InvalidArgument.field("old_password", "is required to change your own password")
        self._policy.check("password", password)
        user = await self.get_user(user_id=user_id)
        try:
            await self.authenticate(user.username, old_password)
        except Unauthenticated:
            raise PermissionDenied(
                "the current password is wrong", reason="BAD_CREDENTIALS"
            ) from None
        await self.set_password(user_id, password)

    # -- home servers ---------------------------------------------------------------------

    async def set_home_server(self, user_id: str, home_server_id: str) -> User:
        """Home one user on a UCServer ("" removes the assignment)."""
        if not user_id:
            raise InvalidArgument.field("user_id", "is required")
        server = check_home_server_id("home_server_id", home_server_id)
        await self.batch_set_home_servers([HomeServerAssignment(user_id, server)])
        return await self.get_user(user_id=user_id)

    async def batch_set_home_servers(self, assignments: Sequence[HomeServerAssignment]) -> int:
        """Apply many assignments, all or nothing; returns how many users were assigned."""
        if not assignments:
            raise InvalidArgument.field("assignments", "must not be empty")
        if len(assignments) > MAX_BATCH_ASSIGNMENTS:
            raise InvalidArgument.field(
                "assignments", f"must hold at most {MAX_BATCH_ASSIGNMENTS} entries"
            )
        seen: set[str] = set()
        checked: list[HomeServerAssignment] = []
        for index, item in enumerate(assignments):
            where = f"assignments[{index}]"
            if not item.user_id:
                raise InvalidArgument.field(f"{where}.user_id", "is required")
            if item.user_id in seen:
                raise InvalidArgument.field(f"{where}.user_id", "appears more than once")
            seen.add(item.user_id)
            server = check_home_server_id(f"{where}.home_server_id", item.home_server_id)
            checked.append(HomeServerAssignment(item.user_id, server))
        ids = [item.user_id for item in checked if plausible_id(item.user_id)]
        found = await self._reader.get_users(ids) if ids else {}
        for item in checked:
            if item.user_id not in found:
                raise _user_not_found(item.user_id)
        return await self._home_servers.set_home_servers(checked)

    # -- groups ---------------------------------------------------------------------------

    async def list_groups(self, requested_size: int, page_token: str) -> Page[Group]:
        """All groups, by name, paged."""
        size = page_size(requested_size)
        cursor = decode_page_token(page_token, "groups", {})
        groups, following = await self._reader.list_groups(cursor, size)
        return Page(groups, encode_page_token("groups", {}, following) if following else "")

    async def create_group(self, group: NewGroup) -> Group:
        """Create a group."""
        writer = self._writable()
        name = check_group_name("group.name", group.name)
        description = check_text("group.description", group.description, max_chars=1024)
        return await writer.create_group(NewGroup(name, description))

    async def delete_group(self, group_id: str) -> None:
        """Delete a group (its members stay)."""
        writer = self._writable()
        if not group_id:
            raise InvalidArgument.field("group_id", "is required")
        if not plausible_id(group_id):
            raise _group_not_found(group_id)
        await writer.delete_group(group_id)

    async def modify_group_members(
        self, group_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> Group:
        """Add and remove members of a group."""
        writer = self._writable()
        if not group_id:
            raise InvalidArgument.field("group_id", "is required")
        if not plausible_id(group_id):
            raise _group_not_found(group_id)
        for field, ids in (("add_user_ids", add), ("remove_user_ids", remove)):
            for index, user_id in enumerate(ids):
                if not plausible_id(user_id):
                    raise InvalidArgument.field(f"{field}[{index}]", "is not a user id")
        return await writer.modify_group_members(
            group_id, tuple(dict.fromkeys(add)), tuple(dict.fromkeys(remove))
        )

    async def list_group_members(
        self, group_id: str, requested_size: int, page_token: str
    ) -> Page[User]:
        """The members of a group, by username, paged."""
        if not group_id:
            raise InvalidArgument.field("group_id", "is required")
        size = page_size(requested_size)
        scope = {"group_id": group_id}
        cursor = decode_page_token(page_token, "members", scope)
        group = await self._reader.get_group(group_id) if plausible_id(group_id) else None
        if group is None:
            raise _group_not_found(group_id)
        users, following = await self._reader.list_users(
            UserQuery(group_id=group.group_id), cursor, size
        )
        return Page(users, encode_page_token("members", scope, following) if following else "")

    @property
    def kind(self) -> BackendKind:
        """The backend kind (SQL or LDAP)."""
        return self.info.kind
