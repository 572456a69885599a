"""The configuration use cases: list, get and set properties (versioned, leased, audited
by the server around them).

A write is checked against the property's definition (type and range), then against the
edit leases (``LeaseCheck``: another admin's lease refuses it), then written with a
compare-and-set on the version the admin edited, under the lease's fencing number. Only a
write the database accepted is announced to the other servers; a database that does not
answer refuses the write with UNAVAILABLE, so nothing is ever accepted and lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from procall.config.live import LiveConfig
from procall.config.model import PropertyKey, PropertySpec, PropertyValue, Scope
from procall.config.ports import ChangeNotifier, ConfigStore, LeaseCheck
from procall.config.registry import PropertyRegistry
from procall.errors import InvalidArgument, Unavailable
from procall.paging import decode_page_token, encode_page_token, page_size
from procall.validation import check_id, check_version

__all__ = ["ConfigService", "NoLeases", "NoNotifier"]

_log = logging.getLogger(__name__)
_LISTING = "config"
#: Page size of ListConfigProperties when the request names none (the contract's).
DEFAULT_LIST_PAGE = 100


class NoLeases:
    """A ``LeaseCheck`` for a system without edit leases: nobody ever holds one."""

    async def fencing_for(self, resource: str, user_id: str, lease_id: str) -> int | None:
        """Always None: writes go on without a lease (versions still guard them)."""
        return None


class NoNotifier:
    """A ``ChangeNotifier`` that tells nobody (one server, tests)."""

    async def changed(self, key: PropertyKey, version: int) -> None:
        """Nothing to do."""


class ConfigService:
    """List, get and set configuration properties for administrators."""

    def __init__(
        self,
        registry: PropertyRegistry,
        store: ConfigStore,
        server_id: str,
        clock: Callable[[], float],
        *,
        leases: LeaseCheck | None = None,
        notifier: ChangeNotifier | None = None,
        local: LiveConfig | None = None,
    ) -> None:
        """``local``: this server's live view, which answers reads of its own values
        while the configuration database does not (writes are refused meanwhile)."""
        self.registry = registry
        self._local = local
        self._store = store
        self._server_id = server_id
        self._clock = clock
        self._leases: LeaseCheck = leases or NoLeases()
        self._notifier: ChangeNotifier = notifier or NoNotifier()

    def key(self, name: str, scope: Scope | None, server_id: str = "") -> PropertyKey:
        """The key of property ``name``: its scope must be the definition's (None: the
        definition's); a LOCAL property names this server when ``server_id`` is empty."""
        spec = self.registry.spec(name)
        if scope is not None and scope is not spec.scope:
            raise InvalidArgument.field("property.scope", f"{name} is a {spec.scope.name} property")
        if spec.scope is Scope.GLOBAL:
            if server_id:
                raise InvalidArgument.field(
                    "property.server_id", "must be empty for a GLOBAL property"
                )
            return PropertyKey(Scope.GLOBAL, "", name)
        server = server_id or self._server_id
        check_id(server, "property.server_id")
        return PropertyKey(Scope.LOCAL, server, name)

    @staticmethod
    def default_of(spec: PropertySpec, key: PropertyKey) -> PropertyValue:
        """What a property never set reads as: its default, version 0."""
        return PropertyValue(key, spec.default)

    async def get(self, key: PropertyKey) -> PropertyValue:
        """The property's value, or its default with version 0 when never set; while the
        database does not answer, this server's own values come from its live view."""
        spec = self.registry.spec(key.name)
        try:
            found = await self._store.get(key)
        except Unavailable:
            if self._local is None or not self._local.concerns(key):
                raise
            return self._local.stored(key.name)  # what this server runs with
        return found if found is not None else self.default_of(spec, key)

    async def list(
        self, scope: Scope, server_id: str, size: int, token: str
    ) -> tuple[list[PropertyValue], str]:
        """A page of every property of ``scope`` (for LOCAL: of ``server_id``, this server
        when empty), by name, with defaults for those never set; and the next page token."""
        server = ""
        if scope is Scope.LOCAL:
            server = server_id or self._server_id
            check_id(server, "server_id")
        elif server_id:
            raise InvalidArgument.field("server_id", "must be empty for GLOBAL properties")
        limit = page_size(size, default=DEFAULT_LIST_PAGE)
        query = {"scope": scope.value, "server_id": server}
        cursor = decode_page_token(token, _LISTING, query)
        after = str(cursor[0]) if cursor else ""
        specs = [s for s in self.registry.specs(scope) if s.name > after]
        page = specs[:limit]
        try:
            stored = {v.key.name: v for v in await self._store.values(scope, server)}
        except Unavailable:
            local = self._local
            if local is None or (scope is Scope.LOCAL and server != local.server_id):
                raise
            stored = {s.name: local.stored(s.name) for s in page}
        values = [
            stored.get(s.name) or self.default_of(s, PropertyKey(scope, server, s.name))
            for s in page
        ]
        more = len(specs) > limit
        return values, encode_page_token(_LISTING, query, [page[-1].name]) if more else ""

    async def set(
        self,
        actor: str,
        key: PropertyKey,
        value: str,
        expected_version: int,
        lease_id: str = "",
    ) -> PropertyValue:
        """Write ``value`` over version ``expected_version`` (0: never set) on behalf of
        admin ``actor``, under ``lease_id`` when the admin holds one.

        Raises ``InvalidArgument`` for a value of the wrong type or range,
        ``FailedPrecondition`` (LEASE_HELD) when another admin holds the lease,
        ``Aborted`` (STALE_VERSION) when the property was changed since, and
        ``Unavailable`` when the configuration database does not answer.
        """
        spec = self.registry.spec(key.name)
        check_version(expected_version, "expected_version")
        text = spec.canonical(value)
        fencing = await self._leases.fencing_for(key.resource, actor, lease_id)
        written = await self._store.compare_and_set(
            key,
            text,
            expected_version=expected_version,
            updated_by=actor,
            update_time=self._clock(),
            fencing=fencing,
        )
        _log.info(
            "configuration %s set to %r by %s (version %d)",
            key.resource,
            text,
            actor,
            written.version,
        )
        await self._notifier.changed(key, written.version)
        return written
