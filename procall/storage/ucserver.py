"""The stores of a UCServer, built from its settings in one place.

The composition root asks this factory for its stores and never holds a Redis client
or a database engine itself: client types stay inside ``procall.storage``. Every store
of the UCServer shares one Redis client and one chat and journal database; ``close``
releases both (bounded, so a dead database cannot hold up a shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from procall.settings import Settings
from procall.storage.outbox import SqliteOutbox
from procall.storage.redis.calls import RedisCallStore
from procall.storage.redis.chat import RedisChatState
from procall.storage.redis.client import RedisUnavailableError, check_redis, create_redis
from procall.storage.redis.config import RedisConfigChanges
from procall.storage.redis.homes import RedisHomeStore
from procall.storage.redis.leases import RedisLeaseStore
from procall.storage.redis.licenses import LicensePool
from procall.storage.redis.moves import RedisMoveOperations
from procall.storage.redis.presence import RedisPresenceStore
from procall.storage.redis.revocations import RedisRevocationStore
from procall.storage.redis.sessions import RedisSessionRegistry
from procall.storage.sql.audit import SqlAuditStore
from procall.storage.sql.central_writer import SqlCentralWriter
from procall.storage.sql.chat_conversations import SqlConversationStore
from procall.storage.sql.chat_messages import SqlMessageStore
from procall.storage.sql.config import SqlConfigStore
from procall.storage.sql.contacts import SqlContactStore
from procall.storage.sql.engine import SqlDatabase
from procall.storage.sql.forwarding import SqlForwardingStore
from procall.storage.sql.journal import SqlJournalStore
from procall.storage.sql.migrate import upgrade_to_head
from procall.storage.sql.policies import SqlPolicyStore

__all__ = ["UCServerStores", "audit_stores", "open_ucserver_stores"]

_log = logging.getLogger(__name__)
_AUDIT_DATABASE = "audit database"
#: Seconds the database may take to close its connections at shutdown.
_DISPOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class UCServerStores:
    """Every store a UCServer uses, ready to be handed to its parts."""

    #: Logged-on sessions of every server (for admins).
    sessions: RedisSessionRegistry
    licenses: LicensePool
    revocations: RedisRevocationStore
    presence: RedisPresenceStore
    contacts: SqlContactStore
    chat_state: RedisChatState
    #: Calls (shared by every UCServer).
    calls: RedisCallStore
    #: Administrators' edit leases (shared by every server, the Directory included).
    leases: RedisLeaseStore
    conversations: SqlConversationStore
    messages: SqlMessageStore
    journal: SqlJournalStore
    #: Users' call forwarding rules.
    forwarding: SqlForwardingStore
    #: The central half of the durable write path.
    central: SqlCentralWriter
    #: The local half of the durable write path (opened by the chat part).
    outbox: SqliteOutbox
    #: Where this server's audit events go (``[database] audit_url``, else the chat and
    #: journal database) ...
    audit: SqlAuditStore
    #: ... and every store ListAuditEvents reads (see ``audit_stores``).
    audit_readers: tuple[SqlAuditStore, ...]
    #: Configuration property values (``[database] config_url``, else the default database).
    config: SqlConfigStore
    #: Client policies (in the configuration database).
    policies: SqlPolicyStore
    #: Configuration changes announced to (and heard from) every server.
    config_changes: RedisConfigChanges
    #: The shared user -> home map the Lookup answers from (written when users move).
    homes: RedisHomeStore
    #: Progress of background moves (rebalance, drain), readable on every UCServer.
    move_operations: RedisMoveOperations
    _redis: aioredis.Redis
    _database: SqlDatabase
    #: The configuration database.
    _config_database: SqlDatabase
    #: Databases opened for the audit log only.
    _audit_databases: tuple[SqlDatabase, ...] = ()

    @property
    def database_name(self) -> str:
        """The chat and journal database, as messages name it."""
        return self._database.name

    async def migrate(self) -> None:
        """Bring the chat, journal and contacts schema up to date; ``Unavailable`` when the
        database does not answer."""
        await upgrade_to_head(self._database, name=self._database.name)
        for database in self._audit_databases:  # the Directory migrates the user database
            if database.name == _AUDIT_DATABASE:
                await upgrade_to_head(database, name=database.name)

    async def migrate_config(self) -> None:
        """Bring the configuration database's schema up to date; ``Unavailable`` when it
        does not answer."""
        await upgrade_to_head(self._config_database, name=self._config_database.name)

    async def close(self) -> None:
        """Close the database connections (bounded) and the Redis client."""
        for database in (self._database, self._config_database, *self._audit_databases):
            try:
                await asyncio.wait_for(database.dispose(), _DISPOSE_TIMEOUT)
            except TimeoutError:
                _log.warning("%s did not close its connections in time", database.name)
        await self._redis.aclose()


async def open_ucserver_stores(settings: Settings, server_id: str) -> UCServerStores:
    """The stores of UCServer ``server_id``, once Redis has answered PING.

    Raises ``RedisUnavailableError`` naming where Redis was expected when it does not
    answer; the database is not contacted (it may come later: see ``migrate``).
    """
    redis = create_redis(settings.redis)
    try:
        await check_redis(redis, settings.redis)
    except RedisUnavailableError:
        await redis.aclose()
        raise
    database = SqlDatabase(
        settings.database.resolved("chat"),
        name="chat and journal database",
        connect_timeout=settings.database.connect_timeout,
    )
    audit, readers, opened = audit_stores(settings, database)
    # its own engine even on the chat database's URL: its errors name it
    config_database = SqlDatabase(
        settings.database.resolved("config"),
        name="configuration database",
        connect_timeout=settings.database.connect_timeout,
    )
    ttl = settings.lookup.heartbeat_ttl
    chat = settings.chat
    return UCServerStores(
        sessions=RedisSessionRegistry(redis, server_id, ttl),
        licenses=LicensePool(redis, server_id, ttl_seconds=ttl),
        revocations=RedisRevocationStore(redis),
        presence=RedisPresenceStore(redis, settings.presence.tick_seconds),
        contacts=SqlContactStore(database),
        chat_state=RedisChatState(redis),
        calls=RedisCallStore(redis),
        leases=RedisLeaseStore(redis),
        conversations=SqlConversationStore(database),
        messages=SqlMessageStore(database),
        journal=SqlJournalStore(database),
        forwarding=SqlForwardingStore(database),
        central=SqlCentralWriter(database),
        outbox=SqliteOutbox(
            chat.outbox_path.replace("{server_id}", server_id),
            chat.outbox_max_records,
            chat.outbox_max_bytes,
        ),
        audit=audit,
        audit_readers=readers,
        config=SqlConfigStore(config_database),
        policies=SqlPolicyStore(config_database),
        config_changes=RedisConfigChanges(redis),
        homes=RedisHomeStore(redis, op_timeout=3 * settings.redis.socket_timeout),
        move_operations=RedisMoveOperations(redis),
        _redis=redis,
        _database=database,
        _config_database=config_database,
        _audit_databases=opened,
    )


def audit_stores(
    settings: Settings, chat_database: SqlDatabase
) -> tuple[SqlAuditStore, tuple[SqlAuditStore, ...], tuple[SqlDatabase, ...]]:
    """Where a UCServer records audit events, where ListAuditEvents reads them, and the
    databases opened for that.

    A UCServer records into the chat and journal database it already uses, or into
    ``[database] audit_url`` when that is set; the Directory records its writes and the
    failed logins into the user database (or the same ``audit_url``). ListAuditEvents
    therefore reads ``audit_url`` alone when it is set, and otherwise both the user
    database and the chat and journal database (once, when they are one database),
    merged newest first: ``audit_url`` on every server puts the whole log in one place.
    """
    urls = settings.database
    known = {urls.resolved("chat"): chat_database}
    opened: list[SqlDatabase] = []

    def database(url: str, name: str) -> SqlDatabase:
        if url not in known:
            known[url] = SqlDatabase(url, name=name, connect_timeout=urls.connect_timeout)
            opened.append(known[url])
        return known[url]

    writes = database(urls.audit_url, _AUDIT_DATABASE) if urls.audit_url else chat_database
    readers = tuple(SqlAuditStore(database(url, "user database")) for url in urls.audit_urls())
    return SqlAuditStore(writes), readers, tuple(opened)
