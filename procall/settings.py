"""Typed settings: a TOML file plus environment overrides.

Every setting has a default that works on one machine (``procall up``). A TOML
file (``--config FILE``) sets values per section::

    [server]
    port = 7001
    [redis]
    url = "redis://redis.example:6379/0"

and the environment overrides both with ``PROCALL_<SECTION>_<NAME>``
(``PROCALL_REDIS_URL``, ``PROCALL_SERVER_PORT``); ``REDIS_URL`` is honoured too.
Unknown sections or keys and values of the wrong type are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "DirectorySettings",
    "LdapSettings",
    "LimitsSettings",
    "LoggingSettings",
    "LookupSettings",
    "MediaSettings",
    "PresenceSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "TelemetrySettings",
    "TlsSettings",
    "load_settings",
]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the problem in one line."""


@dataclass
class ServerSettings:
    """The gRPC server of this process."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (tests, ``procall up``).
    port: int = 0
    #: Stable identifier in the system; derived from role, host and port when empty.
    server_id: str = ""
    #: Host other servers and clients use to reach this one; ``host`` when empty.
    advertise_host: str = ""
    #: Seconds in-flight RPCs get to finish on SIGTERM.
    grace_seconds: float = 5.0
    #: Concurrent RPCs, long-lived streams included (every client holds one Connect stream).
    max_concurrent_rpcs: int = 50_000
    #: grpc's default of 3000 pending requests stalls a reconnect storm of a restarted server.
    max_pending_requests: int = 50_000
    #: Largest request or response message in bytes.
    max_message_bytes: int = 4 * 1024 * 1024
    #: Keepalive ping interval; with ``ping_timeout_ms`` a frozen peer is noticed within seconds.
    keepalive_time_ms: int = 10_000
    #: How long a keepalive ping may go unanswered before the connection is closed.
    ping_timeout_ms: int = 2_000
    #: Where to write a JSON line with the bound address once serving (used by ``procall up``).
    ready_file: str = ""
    #: Client sessions a UCServer declares it can carry (registered with the Lookup).
    capacity: int = 5000
    #: A UCServer's local cache file of its configuration (JSON with a checksum);
    #: ``{server_id}`` is replaced. Empty: ``{server_id}.config-cache.json`` in the
    #: directory of the chat outbox file.
    config_cache_path: str = ""
    #: Seconds between two full re-reads of the configuration database (catches changes
    #: whose Redis notification was missed).
    config_reread_seconds: float = 30.0


@dataclass
class RedisSettings:
    """The Redis holding the shared volatile state."""

    url: str = "redis://127.0.0.1:6379/0"
    #: ``host:port`` of Redis Sentinels; when set, ``url`` only gives the db and password.
    sentinels: list[str] = field(default_factory=list)
    #: The master name the Sentinels monitor.
    sentinel_master: str = "mymaster"
    #: Seconds before a Redis command is given up (keeps the servers responsive when Redis hangs).
    socket_timeout: float = 1.0
    #: Connections a process may open to Redis; commands beyond it fail (redis-py's default
    #: of 100 is too few for a busy UCServer).
    max_connections: int = 1000


@dataclass
class DatabaseSettings:
    """The central SQL databases (SQLAlchemy async URLs)."""

    #: Default for every database below that is left empty.
    url: str = "sqlite+aiosqlite:///procall.db"
    #: User database of the SQL directory backend.
    users_url: str = ""
    #: Chat and journal database.
    chat_url: str = ""
    #: Configuration database.
    config_url: str = ""
    #: Audit log database. Empty: the chat and journal database on UCServers and the user
    #: database on the Directory, which is where ListAuditEvents reads both.
    audit_url: str = ""
    #: Seconds to wait for a connection before answering UNAVAILABLE.
    connect_timeout: float = 3.0

    def resolved(self, name: str) -> str:
        """The URL of the named database (``users``, ``chat``, ``config`` or ``audit``)."""
        value: str = getattr(self, f"{name}_url")
        return value or self.url

    def audit_urls(self) -> list[str]:
        """Where audit events are written: ``audit_url`` alone when set, else the user
        database (the Directory's own writes) and the chat and journal database (the
        UCServers'), once each when they are the same database."""
        if self.audit_url:
            return [self.audit_url]
        return list(dict.fromkeys([self.resolved("users"), self.resolved("chat")]))


@dataclass
class DirectorySettings:
    """The Directory: where users live, and where other servers reach it."""

    #: ``sql`` (user database) or ``ldap`` (Active Directory / LDAP, read-only). With
    #: ``ldap`` the user database URL still names a SQL database: it keeps delegations,
    #: pick-up groups and home-server assignments made through procall.
    backend: str = "sql"
    #: host:port of the Directory server, for UCServers.
    address: str = ""
    #: Failed logins for one account from one network source before that source is locked
    #: out of the account (other sources still log in).
    max_failed_logins: int = 5
    #: Failed logins for one account from all sources together before the account is locked
    #: everywhere (a distributed guessing attack); 0 turns the account-wide lock off.
    max_failed_logins_per_account: int = 100
    #: Seconds a throttled account (or account and source) waits.
    lockout_seconds: float = 30.0
    #: argon2id cost of password hashes (SQL backend); changing them rehashes on next login.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    #: Shortest password accepted when one is set.
    min_password_length: int = 8
    #: Apply pending schema migrations to the user database when the Directory starts.
    migrate_on_start: bool = True
    #: Seconds one unit of work on the user database may take before answering UNAVAILABLE.
    query_timeout: float = 10.0


@dataclass
class LdapSettings:
    """The Active Directory / LDAP backend of the Directory."""

    url: str = "ldap://127.0.0.1:389"
    #: Service account used for searches.
    bind_dn: str = ""
    bind_password: str = ""
    #: Where users and groups live.
    base_dn: str = ""
    users_dn: str = ""
    groups_dn: str = ""
    #: Extra filter all users must match (AD: ``(objectClass=user)``).
    user_filter: str = "(objectClass=user)"
    group_filter: str = "(objectClass=group)"
    #: Maps procall user fields to LDAP attributes; AD names are the defaults.
    attributes: dict[str, str] = field(default_factory=dict)
    #: Attribute holding the home server id; empty to use ``home_server_groups``.
    home_server_attribute: str = ""
    #: Group name -> home server id, for sites that assign home servers by group.
    home_server_groups: dict[str, str] = field(default_factory=dict)
    #: Group whose members are admins.
    admin_group: str = ""
    #: Upgrade ``ldap://`` connections with StartTLS (``ldaps://`` URLs use TLS from the start).
    start_tls: bool = False
    #: CA certificates (PEM) that verify the server; the system store when empty.
    ca_file: str = ""
    #: Seconds to wait for a TCP connection / for an answer before answering UNAVAILABLE.
    connect_timeout: float = 3.0
    receive_timeout: float = 5.0
    #: Entries per page of paged searches (AD's MaxPageSize is 1000).
    page_size: int = 500


@dataclass
class LookupSettings:
    """Registration in the routing view."""

    #: host:port of a Lookup server.
    address: str = ""
    #: Seconds between heartbeats.
    heartbeat_interval: float = 1.0
    #: Seconds after the last heartbeat that a server counts as gone.
    heartbeat_ttl: float = 5.0
    #: Seconds a home server answered by the Directory (on a miss of the shared map) stays
    #: cached in Redis (Lookup).
    home_cache_ttl: float = 300.0
    #: Seconds the Lookup waits for the Directory's answer before answering UNAVAILABLE.
    directory_timeout: float = 2.0
    #: Seconds a call's MediaServer allocation is kept when nobody releases it (Lookup).
    allocation_ttl: float = 24 * 3600.0


@dataclass
class AuthSettings:
    """Session tokens and the credential servers use among themselves."""

    #: PEM file of the Ed25519 private key that signs session tokens (UCServers only; every
    #: UCServer of a system has the same key). Unset: a key for this process only.
    signing_key_file: str = ""
    #: PEM file of the public key(s) that verify session tokens (every server that accepts
    #: tokens; several keys while a new one is rolled out). Unset on a UCServer: its own.
    verify_key_file: str = ""
    #: ``iss`` and ``aud`` of the tokens; alike on every server of a system.
    token_issuer: str = "procall"
    token_audience: str = "procall"
    token_ttl_seconds: int = 8 * 3600
    #: Shared secret of plain mode (no ``[tls]``): servers prove who they are with a
    #: per-call HMAC of it, never by sending it (see ``procall.servers.runtime.identity``).
    service_credential: str = ""
    #: Seconds a plain-mode proof is valid around its timestamp (clock skew plus delay).
    proof_window_seconds: float = 30.0
    #: Seconds a session whose stream dropped waits for the client to resume.
    resume_window_seconds: float = 120.0
    #: Events kept per session for resuming (oldest dropped first).
    replay_buffer_events: int = 10_000
    #: Licenses in the system-wide pool (every UCServer should be configured alike).
    license_pool_size: int = 1000


@dataclass
class TlsSettings:
    """Mutual TLS between procall servers, and TLS for clients (``procall certs`` makes the files).

    With all three files set the server listens on two ports: ``[server] port`` for
    clients (server-only TLS: clients prove who they are with session tokens) and
    ``mesh_port`` for other procall servers (mutual TLS: the caller's certificate names
    its role and server id). Every channel to another server presents ``cert_file``.
    Without them the server runs in plain mode (see ``procall.servers.runtime.identity``).
    """

    #: PEM of the private CA that issued every procall certificate.
    ca_file: str = ""
    #: PEM certificate of this server (SAN URI ``spiffe://procall/<role>/<server id>``).
    cert_file: str = ""
    #: PEM private key of ``cert_file`` (ECDSA P-256; mode 0600).
    key_file: str = ""
    #: Port of the mutual-TLS listener for other servers; 0 picks a free one.
    mesh_port: int = 0

    @property
    def enabled(self) -> bool:
        """Whether TLS is configured (all three files named)."""
        return bool(self.ca_file and self.cert_file and self.key_file)


@dataclass
class ChatSettings:
    """Chat and journal on a UCServer: limits and the local durable outbox."""

    #: SQLite file of the outbox that keeps writes while the chat & journal database is
    #: down; ``{server_id}`` is replaced by the server's id (relative: to the working directory).
    outbox_path: str = "{server_id}.outbox.sqlite"
    #: Records the outbox may hold; beyond it sends answer UNAVAILABLE (OUTBOX_FULL).
    outbox_max_records: int = 200_000
    #: Bytes the outbox file may grow to; beyond it sends answer UNAVAILABLE (OUTBOX_FULL).
    outbox_max_bytes: int = 512 * 1024 * 1024
    #: Records written to the database per transaction when flushing or batching.
    flush_batch: int = 500
    #: Seconds between attempts to reach the database while the outbox holds records.
    flush_retry_seconds: float = 1.0
    #: Seconds a send's request id is remembered for idempotent retries.
    request_id_ttl_seconds: float = 24 * 3600.0
    #: Seconds a typing indication lasts unless renewed.
    typing_ttl_seconds: float = 6.0


@dataclass
class PresenceSettings:
    """Presence on a UCServer."""

    #: Seconds between two batches of presence changes: the changes of one tick go to
    #: Redis in one call, to the watchers in one fan-out and to each other UCServer in one
    #: message; a lone change after a quiet tick goes at once (so a change waits at most
    #: this long). 0 sends each batch as soon as the previous one is done.
    tick_seconds: float = 0.005


@dataclass
class CallSettings:
    """Softphone calls on a UCServer."""

    #: Seconds a call rings before it ends unanswered (NO_ANSWER).
    ring_seconds: float = 30.0
    #: Seconds a call's shared state lives unless refreshed; the parties' UCServers refresh
    #: connected calls, so only a call whose servers all died expires.
    live_ttl_seconds: float = 120.0
    #: Seconds an ended call stays readable (GetCall, retried requests).
    ended_ttl_seconds: float = 300.0
    #: Seconds a PlaceCall request id is remembered for idempotent retries.
    request_id_ttl_seconds: float = 3600.0
    #: Seconds between two probes of each MediaServer carrying calls of this server's users;
    #: a MediaServer that fails two probes in a row is left: its calls move to another one.
    media_probe_seconds: float = 0.5


@dataclass
class MovesSettings:
    """Moving users between UCServers (admin moves, rebalances, drains)."""

    #: Moves per second of a rebalance or drain whose request names no rate (token bucket).
    moves_per_second: int = 50
    #: Seconds the old home of a moved user forwards the deliveries that still reach it
    #: (routers cache homes for 60 s, and drop them at once when a move is announced).
    forward_seconds: float = 120.0


@dataclass
class LimitsSettings:
    """Caps on what one user or one network source may take of a server."""

    #: Concurrent sessions (and so licenses) per user. At the cap the oldest session
    #: without an open stream is ended to make room (a client that crashed); when every
    #: session has a stream, Login answers RESOURCE_EXHAUSTED (LIMIT_EXCEEDED).
    sessions_per_user: int = 5
    #: Open Connect streams per user on one UCServer.
    streams_per_user: int = 10
    #: Requests per second (and at once) of one user's sessions; administrators are exempt.
    user_rate: float = 100.0
    user_burst: float = 400.0
    #: Requests per second (and at once) without a session (Login) from one network address.
    source_rate: float = 50.0
    source_burst: float = 500.0
    #: Largest request message of client-facing methods, unless ``method_message_bytes``
    #: names the method (``"procall.api.chat.v1.ChatService/SendMessage" = "65536"``).
    client_message_bytes: int = 256 * 1024
    method_message_bytes: dict[str, str] = field(default_factory=dict)
    #: Seconds a stream may go without a message from its caller (acks and keepalives count)
    #: before it is ended; 0 turns the bound off.
    stream_idle_seconds: float = 300.0
    #: Past its capacity a server refuses new client calls (RESOURCE_EXHAUSTED, OVERLOADED,
    #: with RetryInfo) instead of letting every caller wait: when its event loop has lagged
    #: more than ``overload_lag_ms`` for ``overload_window_seconds`` (0 turns this off), or
    #: more than ``max_in_flight`` client calls are in progress (0: no cap). Streams, acks,
    #: logouts and hanging up are never refused; administrators and servers are exempt.
    overload_lag_ms: float = 100.0
    overload_window_seconds: float = 1.0
    max_in_flight: int = 2000
    #: Typical seconds a refused caller is asked to wait (spread from half to 1.5 times).
    overload_retry_seconds: float = 1.0
    #: Connect streams a UCServer attaches at once (a restarted server's returning clients:
    #: the first in are back first; 0: no bound), and how many more may wait their turn;
    #: past that, RESOURCE_EXHAUSTED (OVERLOADED) with a RetryInfo of about
    #: ``opening_retry_seconds`` (spread from half to 1.5 times).
    opening_concurrency: int = 64
    opening_queue: int = 2000
    opening_retry_seconds: float = 1.0


@dataclass
class MediaSettings:
    """The MediaServer."""

    #: Concurrent calls (bridges) this server declares it can carry; more are refused.
    capacity: int = 40
    #: The only local IP addresses offered to WebRTC peers as ICE host candidates. Empty
    #: (the default): every address of every interface, loopback excepted, as aioice finds
    #: them (``procall.media.MediaConfig.host_addresses = None``). Set the media addresses
    #: clients reach; ``["127.0.0.1"]`` keeps media on loopback (tests). No STUN/TURN is used.
    host_addresses: list[str] = field(default_factory=list)
    #: Whether the process's CPU use counts in the load sent to the Lookup (a busy core
    #: makes the server look fuller than its calls alone). Turn it off where the process's
    #: CPU figure says nothing about this server, for example several servers in one process.
    cpu_in_load: bool = True


@dataclass
class TelemetrySettings:
    """OpenTelemetry exporters."""

    #: ``none`` (nothing is instrumented: no cost), ``console`` (spans printed on stdout)
    #: or ``otlp`` (sent to an OpenTelemetry collector).
    exporter: str = "none"
    #: ``host:port`` of the OTLP/gRPC collector; empty: ``OTEL_EXPORTER_OTLP_ENDPOINT``
    #: or ``localhost:4317``.
    otlp_endpoint: str = ""
    #: Share of the traces started here that are recorded (0 to 1), when an exporter is
    #: set. Parent-based: a server that gets a call or an event of a trace follows the
    #: decision made where the trace began.
    sampling_ratio: float = 1.0
    #: Whether the process collects metrics and serves them for Prometheus to scrape (and,
    #: with ``exporter = "otlp"``, pushes them to ``otlp_endpoint``); see
    #: ``procall.telemetry.metrics``.
    metrics: bool = True
    #: ``host:port`` of the scrape endpoint (``http://host:port/metrics``); port 0 picks a
    #: free one (written to the ready file and to ``endpoints.json``). Loopback by default:
    #: the figures are for the operators of this host.
    metrics_address: str = "127.0.0.1:0"
    #: Seconds between two pushes of the metrics by OTLP.
    metrics_export_seconds: float = 60.0


@dataclass
class LoggingSettings:
    """The log lines of a server process."""

    #: ``text`` (one readable line per record) or ``json`` (one JSON object per line, with
    #: ``trace_id`` and ``span_id`` while a span is current); see ``procall.telemetry.logs``.
    format: str = "text"


@dataclass
class Settings:
    """All settings of a procall process."""

    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    ldap: LdapSettings = field(default_factory=LdapSettings)
    lookup: LookupSettings = field(default_factory=LookupSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    calls: CallSettings = field(default_factory=CallSettings)
    moves: MovesSettings = field(default_factory=MovesSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


def _field_types(section: object) -> dict[str, Any]:
    hints = typing.get_type_hints(type(section))
    return {f.name: hints[f.name] for f in dataclasses.fields(section)}  # type: ignore[arg-type]


def _coerce(where: str, expected: Any, value: Any) -> Any:
    origin = typing.get_origin(expected) or expected
    if origin is bool:
        ok = isinstance(value, bool)
    elif origin is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif origin is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif origin is str:
        ok = isinstance(value, str)
    elif origin is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    else:  # pragma: no cover - a new field type must be taught here
        raise TypeError(f"unsupported setting type {expected!r}")
    if not ok:
        name = getattr(origin, "__name__", str(origin))
        raise ConfigError(f"setting {where} must be a {name}, not {value!r}")
    return value


def _parse_env(where: str, expected: Any, text: str) -> Any:
    origin = typing.get_origin(expected) or expected
    try:
        if origin is bool:
            lowered = text.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(text)
            return lowered in {"1", "true", "yes", "on"}
        if origin is int:
            return int(text)
        if origin is float:
            return float(text)
        if origin is list:
            return [part.strip() for part in text.split(",") if part.strip()]
        if origin is dict:
            pairs = (part.split("=", 1) for part in text.split(",") if part.strip())
            return {key.strip(): val.strip() for key, val in pairs}
    except ValueError:
        name = getattr(origin, "__name__", str(origin))
        raise ConfigError(f"environment {where} must be a {name}, not {text!r}") from None
    return text


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from defaults, an optional TOML file and the environment.

    Raises ``ConfigError`` with a one-line message for an unreadable or invalid
    file, an unknown key, or a value of the wrong type.
    """
    settings = Settings()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        _apply_file(settings, data, str(path))
    _apply_env(settings, env if env is not None else {})
    tls = settings.tls
    named = [bool(tls.ca_file), bool(tls.cert_file), bool(tls.key_file)]
    if any(named) and not all(named):
        # half a TLS configuration must not quietly fall back to plaintext
        raise ConfigError("[tls] needs ca_file, cert_file and key_file together")
    if settings.logging.format not in ("text", "json"):
        raise ConfigError(f"[logging] format must be text or json, not {settings.logging.format!r}")
    return settings


def _apply_file(settings: Settings, data: Mapping[str, Any], source: str) -> None:
    sections = {f.name for f in dataclasses.fields(settings)}
    for section_name, values in data.items():
        if section_name not in sections:
            raise ConfigError(f"{source}: unknown section [{section_name}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section_name}] must be a table")
        section = getattr(settings, section_name)
        types_ = _field_types(section)
        for key, value in values.items():
            if key not in types_:
                raise ConfigError(f"{source}: unknown setting [{section_name}] {key}")
            setattr(section, key, _coerce(f"[{section_name}] {key}", types_[key], value))


def _apply_env(settings: Settings, env: Mapping[str, str]) -> None:
    if env.get("REDIS_URL"):
        settings.redis.url = env["REDIS_URL"]
    for f in dataclasses.fields(settings):
        section = getattr(settings, f.name)
        for key, expected in _field_types(section).items():
            var = f"PROCALL_{f.name}_{key}".upper()
            if var in env:
                setattr(section, key, _parse_env(var, expected, env[var]))
