"""Composition root of the Directory server (``procall serve directory``).

Builds the backend named by ``[directory] backend``:

* ``sql``: users, groups, credentials and delegations in the user database
  (``[database] users_url``, else ``url``; SQLite, PostgreSQL or SQL Server);
* ``ldap``: users and groups from Active Directory / LDAP (read-only), logins by
  user bind; delegations, pick-up groups and home-server assignments in the same
  SQL database, which then is the Directory's side database.

The database is migrated to the newest schema at start (``migrate_on_start``); a
database that does not answer then stops the start with one clear line. Later
outages of the database or the LDAP server answer UNAVAILABLE and heal by
themselves when the backend is back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procall.api.directory.v1 import directory_service_pb2 as directory_pb
from procall.api.directory.v1 import directory_service_pb2_grpc as directory_grpc
from procall.audit import BufferedAuditLog
from procall.directory import (
    BackendInfo,
    BackendKind,
    Delegations,
    Directory,
    HashParameters,
    LoginThrottle,
    PasswordAuthenticator,
    PasswordHasher,
    PasswordPolicy,
    UserReader,
)
from procall.errors import Unavailable
from procall.leases import EditLeases
from procall.servers.directory.audited import DIRECTORY_AUDIT_RULES
from procall.servers.directory.servicer import DirectoryServicer
from procall.servers.runtime.app import ServerApp, StartupError, binding, token_verifier
from procall.servers.runtime.audit import AuditInterceptor
from procall.servers.runtime.limits import LimitsInterceptor, call_limits
from procall.servers.runtime.overload import LagSampler, shedder_of
from procall.session.revocations import RevokingVerifier
from procall.settings import DirectorySettings, Settings

if TYPE_CHECKING:
    from procall.storage.sql import SqlDatabase

__all__ = ["build_directory", "hash_parameters"]


def hash_parameters(settings: DirectorySettings) -> HashParameters:
    """The argon2id parameters of ``[directory]``, checked."""
    params = HashParameters(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    if params.time_cost < 1 or params.parallelism < 1:
        raise StartupError("[directory] argon2_time_cost and argon2_parallelism must be >= 1")
    if params.memory_kib < 8 * params.parallelism:
        raise StartupError("[directory] argon2_memory_kib must be at least 8 x argon2_parallelism")
    return params


async def build_directory(settings: Settings) -> ServerApp:
    """Wire the DirectoryService on the configured backend."""
    # imported here: SQLAlchemy, Alembic and ldap3 cost ~1 s to import, which every
    # `procall` command listing the roles would otherwise pay
    from procall.storage.ldap import (
        LdapConfig,
        LdapConfigError,
        LdapGateway,
        LdapUserDirectory,
    )
    from procall.storage.sql import (
        SqlConfigError,
        SqlDatabase,
        SqlDelegationStore,
        SqlHomeServerOverrides,
        SqlUserStore,
        upgrade_to_head,
    )
    from procall.storage.sql.audit import SqlAuditStore

    backend = settings.directory.backend.strip().lower()
    if backend not in ("sql", "ldap"):
        raise StartupError(f"[directory] backend must be 'sql' or 'ldap', not {backend!r}")
    hasher = PasswordHasher(hash_parameters(settings.directory))
    name = "user database" if backend == "sql" else "directory database"
    try:
        database = SqlDatabase(
            settings.database.resolved("users"),
            name=name,
            connect_timeout=settings.database.connect_timeout,
            operation_timeout=settings.directory.query_timeout,
        )
    except SqlConfigError as exc:
        raise StartupError(str(exc)) from None
    try:
        if settings.directory.migrate_on_start:
            await upgrade_to_head(database)
        else:
            await database.ping()
    except Unavailable:
        await database.dispose()
        raise StartupError(f"the {name} at {database.description} does not answer") from None

    audit_database = database
    if settings.database.audit_url:
        audit_database = await _audit_database(settings)
    audit = BufferedAuditLog(SqlAuditStore(audit_database))
    throttle = LoginThrottle(
        settings.directory.max_failed_logins,
        settings.directory.lockout_seconds,
        max_account_failures=settings.directory.max_failed_logins_per_account,
    )
    policy = PasswordPolicy(min_chars=settings.directory.min_password_length)
    gateway: LdapGateway | None = None
    delegation_users: UserReader
    if backend == "sql":
        store = SqlUserStore(database)
        directory = Directory(
            info=BackendInfo(BackendKind.SQL, True, f"SQL user database {database.description}"),
            reader=store,
            authenticator=PasswordAuthenticator(store, hasher),
            home_servers=store,
            writer=store,
            hasher=hasher,
            throttle=throttle,
            policy=policy,
            audit=audit,
        )
        delegation_users = store
    else:
        try:
            config = LdapConfig.from_settings(settings.ldap)
            gateway = LdapGateway(config)
        except LdapConfigError as exc:
            await database.dispose()
            raise StartupError(str(exc)) from None
        ldap = LdapUserDirectory(gateway, SqlHomeServerOverrides(database))
        directory = Directory(
            info=BackendInfo(BackendKind.LDAP, False, config.describe()),
            reader=ldap,
            authenticator=ldap,
            home_servers=ldap,
            writer=None,
            hasher=hasher,
            throttle=throttle,
            policy=policy,
            audit=audit,
        )
        delegation_users = ldap
    delegations = Delegations(SqlDelegationStore(database), delegation_users)

    # tokens are checked here without sessions: follow the UCServers' logouts to refuse them
    tokens = token_verifier(settings.auth)
    revoking: RevokingVerifier | None = None
    close_revocations = None
    if tokens is not None:
        from procall.storage.revocations import open_revocation_store

        revocations, close_revocations = open_revocation_store(settings)
        revoking = RevokingVerifier(tokens, revocations, retry=settings.lookup.heartbeat_interval)

    async def start(_: ServerApp) -> None:
        audit.start()
        if revoking is not None:
            await revoking.start()

    async def close(_: ServerApp) -> None:
        await audit.stop()
        if revoking is not None:
            await revoking.stop()
        if close_revocations is not None:
            await close_revocations()
        await close_leases()
        if gateway is not None:
            await gateway.close()
        await database.dispose()
        if audit_database is not database:
            await audit_database.dispose()

    # the administrators' edit leases of users and groups, on the shared Redis
    from procall.storage.leases import open_lease_store

    lease_store, close_leases = open_lease_store(settings)
    leases = EditLeases(lease_store, settings.server.server_id or "directory")

    services = [
        binding(
            DirectoryServicer(directory, delegations, leases),
            directory_pb,
            directory_grpc.add_DirectoryServiceServicer_to_server,
            "DirectoryService",
        )
    ]
    shedder = shedder_of(settings)
    lag = LagSampler(shedder)
    return ServerApp(
        "directory",
        settings,
        services,
        on_start=[start],
        on_stop=[close],
        interceptors=[
            LimitsInterceptor(call_limits(settings), limit_anonymous=False, shedder=shedder),
            AuditInterceptor(audit, DIRECTORY_AUDIT_RULES),
        ],
        audit=audit,
        verifier=revoking,
        components={"audit": audit},
        lag=lag,
    )


async def _audit_database(settings: Settings) -> SqlDatabase:
    """The separate audit database of ``[database] audit_url``, migrated."""
    from procall.storage.sql import SqlConfigError, SqlDatabase, upgrade_to_head

    try:
        database = SqlDatabase(
            settings.database.audit_url,
            name="audit database",
            connect_timeout=settings.database.connect_timeout,
        )
    except SqlConfigError as exc:
        raise StartupError(str(exc)) from None
    try:
        await upgrade_to_head(database)
    except Unavailable:
        await database.dispose()
        raise StartupError(
            f"the audit database at {database.description} does not answer"
        ) from None
    return database
