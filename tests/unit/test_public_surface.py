"""The public surface of procall, in one table: every pinned module's public names and the
face rule of the domain packages (their independence from transports and stores is pinned
in ``test_layers.py``).

A change to a public name must change this table in the same commit: that makes it
deliberate and visible in review.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import procall

# -- the pinned names: module -> its ``__all__`` ------------------------------------------------

SURFACE: dict[str, set[str]] = {
    # foundation
    "procall.errors": {
        "Aborted", "AlreadyExists", "ErrorKind", "FailedPrecondition", "FieldViolation",
        "InvalidArgument", "NotFound", "PermissionDenied", "ProcallError", "ResourceExhausted",
        "Unauthenticated", "Unavailable", "Unimplemented",
    },
    "procall.clock": {"Clock", "UnixTime", "from_datetime", "now", "to_datetime"},
    "procall.validation": {
        "MAX_ID_CHARS", "MAX_REQUEST_ID_CHARS", "MAX_VERSION", "check_id", "check_ids",
        "check_request_id", "check_text", "check_version", "reject_nul",
    },
    "procall.servers.codecs.time": {"seconds_of", "seconds_or_none", "timestamp", "timestamp_of"},
    "procall.servers.runtime.grpc_server": {
        "BindError", "GrpcServer", "ServiceBinding", "server_options",
    },
    "procall.servers.runtime.app": {
        "Hook", "ServerApp", "StartupError", "binding", "ensure_server_id", "not_yet_served",
        "token_signer", "token_verifier",
    },
    "procall.servers.runtime.enforcer": {"NoTokens", "PolicyEnforcer", "TokenChecker"},
    "procall.servers.runtime.policy": {
        "ADMIN", "POLICIES", "PUBLIC", "USER", "Policy", "Roles", "SessionRule", "services",
    },
    "procall.session.tokens": {
        "DEFAULT_AUDIENCE", "DEFAULT_ISSUER", "SessionClaims", "TokenSigner", "TokenVerifier",
        "key_id",
    },
    "procall.security.keys": {
        "PRIVATE_KEY_NAME", "PUBLIC_KEY_NAME", "KeyFileError", "generate_token_keys",
        "load_signing_key", "load_verify_keys",
    },
    "procall.servers.runtime.errors": {"ERROR_DOMAIN", "ErrorMappingInterceptor", "status_for"},
    "procall.servers.runtime.identity": {
        "PROOF_HEADER",
        "IdentifyService",
        "ProofSigner",
        "ServiceAuthenticator",
        "ServiceIdentityInterceptor",
        "mesh_auth_required",
        "role_target",
        "service_identity",
    },
    "procall.servers.runtime.channels": {
        "ExtraMetadata", "MeshChannels", "calling_channel", "metadata_channel", "proofs_for",
        "proving_channel",
    },
    "procall.servers.runtime.limits": {
        "LimitsInterceptor",
        "call_limits",
        "source_of",
    },
    "procall.servers.runtime.audit": {"AuditInterceptor", "AuditRule", "actor_of"},
    "procall.servers.runtime.vitals": {
        "ENV_VAR", "SAMPLE_SECONDS", "VitalsSummary", "read_vitals", "start_vitals",
    },
    "procall.servers.runtime.rpc_metrics": {"RPC_DURATION", "RpcMetricsInterceptor"},
    "procall.telemetry.metrics": {
        "FANOUT_BUCKETS", "LAG_BUCKETS", "SECONDS_BUCKETS", "Attributes", "ProcessMetrics",
        "Reading",
    },
    "procall.telemetry.logs": {
        "REDACTED", "TEXT_FORMAT", "SecretRedactingFormatter", "TraceContextFilter",
        "configure_logging", "formatter_for", "redact",
    },
    "procall.limits": {
        "CLIENT_API_PREFIX",
        "DEFAULT_METHOD_MESSAGE_BYTES",
        "CallLimits",
        "KeyedBuckets",
        "LimitsConfig",
        "LoadShedder",
        "OverloadConfig",
        "StreamSlot",
        "TokenBucket",
        "stream_idle",
    },
    "procall.audit": {
        "AuditEvent",
        "AuditListing",
        "AuditLog",
        "AuditOutcome",
        "AuditPage",
        "AuditQuery",
        "AuditReader",
        "AuditSink",
        "BufferedAuditLog",
        "StoredAuditEvent",
    },
    "procall.launch.redis": {"RedisProcess", "RedisStartError", "find_redis_server", "free_port"},
    "procall.security": {
        "PRIVATE_DIR_MODE",
        "PRIVATE_FILE_MODE",
        "InsecureFileError",
        "KeyFileError",
        "generate_token_keys",
        "load_signing_key",
        "load_verify_keys",
        "private_dir",
        "private_file",
        "require_private",
        "write_private",
        "ROLES",
        "CertificateAuthority",
        "IssuedCertificate",
        "ensure_ca",
        "issue",
        "parse_spiffe_id",
        "spiffe_id",
    },
    "procall.launch.datacenter": {"DataCenter", "DataCenterError", "Endpoint", "run_datacenter"},
    "procall.launch.postgres": {
        "PG_USER", "PostgresError", "PostgresServer", "as_pg_user", "find_postgres_bindir",
        "postgres_unavailable_reason", "run_pg_command",
    },
    "procall.launch.demo": {
        "DEMO_CONTACTS", "DEMO_USERS", "DemoUser", "seed_demo_contacts", "seed_demo_directory",
    },
    "procall.admin": {"add_admin_parser"},
    # the domain packages (their faces, see FACES below)
    "procall.admin_views": {
        "DEFAULT_SESSIONS_PAGE", "AdminViews", "LicenseCounter", "LicenseUsage", "LiveServers",
        "LoggedOnSession", "LoggedOnSessions", "ServerState", "SessionFilter", "state_of",
    },
    "procall.calls": {
        "DEFAULT_NO_ANSWER_TIMEOUT", "MAX_HOPS", "MAX_NO_ANSWER_TIMEOUT", "MAX_RULES",
        "MAX_SDP_CHARS", "MIN_NO_ANSWER_TIMEOUT", "Call", "CallEvents", "CallJournal",
        "CallState", "CallStore", "CallTimings", "Callees", "Calls", "EndReason",
        "ForwardingCondition", "ForwardingDelegations", "ForwardingRule", "ForwardingService",
        "ForwardingStore", "ForwardingUsers", "MediaAllocation", "MediaServers", "NoAnswer",
        "PickupRights", "Reachability", "ReachabilityOf", "Route", "check_rules",
        "journal_entries", "telephony_of",
    },
    "procall.calls.forwarding": {
        "DEFAULT_NO_ANSWER_TIMEOUT", "MAX_HOPS", "MAX_NO_ANSWER_TIMEOUT", "MAX_RULES",
        "MIN_NO_ANSWER_TIMEOUT", "ForwardingCondition", "ForwardingDelegations", "ForwardingRule",
        "ForwardingService", "ForwardingStore", "ForwardingUsers", "NoAnswer", "Reachability",
        "ReachabilityOf", "Route", "check_rules",
    },
    "procall.chat": {
        "MAX_GROUP_MEMBERS", "MAX_REQUEST_ID_CHARS", "MAX_TEXT_BYTES", "MAX_TITLE_CHARS",
        "Allocation", "ChatEventSink", "ChatMessage", "ChatState", "Conversation",
        "ConversationKind", "ConversationStore", "Conversations", "MemberConversation",
        "MemberAllocation", "Membership", "MessageStore", "MessageWrites", "Messaging",
        "MessagingLimits", "ReadMarker", "SendConfirmation", "TypingNotice", "UserCheck",
        "UserDirectory", "direct_conversation_id",
    },
    "procall.directory": {
        "USER_MUTABLE_FIELDS", "Account", "Authenticator", "BackendInfo", "BackendKind",
        "CredentialStore", "Delegation", "DelegationScope", "DelegationStore", "Delegations",
        "Directory", "Group", "HashParameters", "HomeServerAssignment", "HomeServerStore",
        "LoginThrottle", "NewDelegation", "NewGroup", "NewPickupGroup", "NewUser", "Page",
        "PasswordAuthenticator", "PasswordHasher", "PasswordPolicy", "PickupGroup",
        "SearchField", "User", "UserChanges", "UserQuery", "UserReader", "UserWriter",
        "etag_of_time", "user_etag",
    },
    "procall.journal": {
        "MAX_NOTE_BYTES", "Journal", "JournalEntry", "JournalEventSink", "JournalKind",
        "JournalStore", "JournalWrites", "entry_id_for",
    },
    "procall.leases": {
        "DEFAULT_LEASE_TTL", "MAX_LEASE_TTL", "MAX_RESOURCE_CHARS", "MIN_LEASE_TTL", "EditLease",
        "EditLeases", "LeaseGuard", "LeaseStore", "check_resource", "lease_held", "new_lease_id",
        "resource_of_lease",
    },
    "procall.outbox": {
        "CentralWriter", "CodecError", "DurableWriter", "Outbox", "Persisted", "Record",
        "decode_record", "encode_record",
    },
    "procall.policies": {
        "ClientFeature", "ClientPolicies", "ClientPolicy", "GroupsOf", "PolicyStore",
        "SubjectKind", "denied_for",
    },
    "procall.presence": {
        "DEFAULT_CONTACTS_PAGE", "FULL_CHECK_EVERY", "MASKABLE_FIELDS", "MAX_NOTE_CHARS",
        "MAX_USERS_PER_REQUEST", "Availability", "CallerSession", "Capabilities", "ContactStore",
        "DelegationChecker", "Presence", "PresenceChange", "PresenceManager", "PresenceNotifier",
        "PresenceStore", "TelephonyState", "UserDirectory", "WatchIndex", "check_user_ids",
        "check_usernames",
        "contacts_page", "requested_change",
    },
    "procall.routing": {
        "BUSY_CPU_PERCENT", "MAX_EPOCH", "AllocationState", "Candidate", "ChangeKind", "CpuGauge",
        "DependencyHealth", "HeartbeatAck",
        "HomeAssignment", "HomeDirectory", "HomeStore", "Listing", "LoadGauge", "LookupPort",
        "MediaAllocations", "Registrar", "ResolvedHome", "RoutingService", "ServerIdentity",
        "ServerInfo", "ServerObserved", "ServerRegistry", "ServerRole", "TopologyChange",
        "TopologyObservation", "TopologyView", "busy_cpu_share", "choose_two_random",
        "PlannedMove", "plan_drain", "plan_rebalance",
    },
    "procall.session": {
        "Attachment", "AuthenticatedUser", "Authenticator", "EventLog", "Licenses", "LiveSession",
        "LoginResult", "ReplayGap", "ResumePoint", "ResumeTokens", "RevocationList",
        "RevocationStore", "RevokingVerifier", "TokenCheck",
        "SequencedEvent", "ServerLocator", "SessionClaims", "SessionHub", "SessionManager",
        "SessionObserver", "TokenSigner", "decode_resume_token", "encode_resume_token",
        "resume_expired", "DEFAULT_AUDIENCE", "DEFAULT_ISSUER", "TokenVerifier", "key_id",
        "Forwarder", "HandOver", "HandOverPeer", "MovedTo", "Rehoming", "SessionMover",
        "OpeningGate",
    },
    # the outbox's parts
    "procall.outbox.writer": {"DurableWriter", "Persisted"},
    "procall.outbox.codec": {
        "KIND_JOURNAL_ENTRY", "KIND_MESSAGE", "KIND_READ_MARKER", "CodecError", "decode_record",
        "encode_record", "encode_text", "record_kind",
    },
    # stores
    "procall.storage.outbox": {"SqliteOutbox"},
    "procall.storage.ldap": {
        "BACKEND_NAME", "DEFAULT_ATTRIBUTES", "AttributeMap", "HomeServerOverrides", "LdapConfig",
        "LdapConfigError", "LdapGateway", "LdapUserDirectory",
    },
    "procall.storage.sql.engine": {
        "SqlConfigError", "SqlDatabase", "create_engine", "describe_url", "is_unavailable_error",
    },
    "procall.storage.sql.migrate": {
        "MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision",
        "load_all_tables", "migration_sql", "upgrade_to_head",
    },
    "procall.storage.sql.chat_conversations": {
        "SqlConversationStore", "later_of", "lock_conversation", "member_conversations_page",
        "members_of", "refuse_nul",
    },
    "procall.storage.sql.chat_messages": {
        "UNREAD_CHUNK", "SqlMessageStore", "history_page", "message_from_row", "search_messages",
        "unread_counts",
    },
    "procall.storage.sql.journal": {"SqlJournalStore", "entry_from_row", "journal_page"},
    "procall.storage.sql.forwarding": {"SqlForwardingStore", "call_forwarding"},
    "procall.storage.sql.config": {"SqlConfigStore", "config_properties"},
    "procall.storage.config_cache": {"CacheFileError", "ConfigCacheFile"},
    "procall.storage.redis.config": {"CONFIG_CHANNEL", "RedisConfigChanges"},
    "procall.servers.codecs.config": {"property_to_proto", "scope_from_proto", "scope_to_proto"},
    "procall.config": {
        "UCSERVER_PROPERTIES", "ChangeNotifier", "ConfigService", "ConfigStore", "ConfigValue",
        "LeaseCheck", "LiveConfig", "NoLeases", "NoNotifier", "PropertyKey", "PropertyRegistry",
        "PropertySpec", "PropertyType", "PropertyValue", "Scope", "resource_of",
    },
    "procall.storage.sql.central_writer": {
        "SqlCentralWriter", "advance_markers", "bump_conversations", "existing_entry_ids",
        "existing_message_keys",
    },
    "procall.storage.redis.leases": {"RedisLeaseStore"},
    "procall.storage.leases": {"open_lease_store"},
    "procall.storage.redis.registry": {
        "RedisHomeStore", "RedisMediaAllocations", "RedisServerRegistry",
    },
    # servers
    "procall.servers.directory.root": {"build_directory", "hash_parameters"},
    "procall.servers.directory.servicer": {
        "SELF_SERVICE_FIELDS", "DirectoryServicer", "phone_book_entry", "user_to_pb",
    },
    "procall.servers.lookup.root": {"build_lookup", "sweep_interval"},
    "procall.servers.lookup.servicer": {"LookupServicer"},
    "procall.servers.media.root": {"build_media"},
    "procall.servers.media.servicer": {"MediaServicer"},
    "procall.servers.codecs.media": {"bridge_to_proto", "leg_to_proto"},
    "procall.servers.codecs.forwarding": {
        "rule_from_proto", "rule_to_proto", "rules_from_proto", "rules_to_proto",
    },
    "procall.servers.upstream.registration": {
        "GrpcLookupPort", "LookupRegistration", "lookup_channel",
    },
    "procall.servers.codecs.routing": {
        "CHANGE_KINDS", "role_from_proto", "role_to_proto", "server_from_proto", "server_to_proto",
    },
    # the MediaServer's media core (aiortc, no grpc)
    "procall.media": {
        "AUDIO_CODEC", "DEFAULT_QUEUE_PACKETS", "LOOPBACK", "VERIFIED_AIORTC_VERSION",
        "VIDEO_CODEC", "Bridge", "BridgeInfo", "BridgeListener", "Bridges", "EndListener",
        "ForwardedTrack", "FrameJitterBuffer", "KeyframeLimiter", "KeyframeListener",
        "KeyframeRequester", "Leg", "LegInfo", "LegState", "MediaConfig", "MediaLoad",
        "PacketTap", "PassThroughJitterBuffer", "aiortc_internals_problems", "host_addresses",
        "install_host_address_hook", "tap_receiver", "watch_keyframe_requests",
    },
    # the client SDK
    "procall.client": {
        "DEFAULT_CLIENT_NAME", "AudioSource", "Availability", "Backoff", "Call", "CallChanged",
        "ChannelFactory", "ClientEvent", "ClientOptions", "Connected", "ConversationChanged",
        "Disconnected", "ForwardingRule", "JournalEntryAdded", "MediaNegotiator",
        "MessageCreated", "Presence", "PresenceChanged", "ProcallClient", "ProcallClientError",
        "ReadReceipt", "Recording", "Redirected", "Resynced", "ServerEndpoint", "SessionClosed",
        "SessionInfo", "Softphone", "TelephonyState", "ToneSource", "TypingChanged",
        "UnknownEvent", "WavSource", "event_from_proto", "insecure_channel", "tls_channels",
    },
    "procall.client.cli": {
        "CLIENT_NAME", "ClientCliError", "add_client_parser", "run_client", "run_client_command",
        "server_ca_file",
    },
}  # fmt: skip

# -- the face rule ----------------------------------------------------------------------------
# Every domain package's ``__init__`` re-exports its model and ports (every public name) and
# its use-cases (every public class). Each module of the package is named here as one of
# these, or as internal (helpers the package uses itself), so a new module is placed on purpose.

FACES: dict[str, dict[str, tuple[str, ...]]] = {
    "procall.admin_views": {
        "model": ("model",), "ports": ("ports",), "use_cases": ("views",), "internal": (),
    },
    "procall.audit": {
        "model": ("model",),
        "ports": ("ports",),
        "use_cases": ("buffer", "listing"),
        "internal": (),
    },
    "procall.calls": {
        "model": ("model",),
        "ports": ("ports",),
        "use_cases": ("forwarding", "service"),
        "internal": (),
    },
    "procall.chat": {
        "model": ("model",),
        "ports": ("ports",),
        "use_cases": ("conversations", "members", "messaging"),
        "internal": ("confirmations", "validation"),
    },
    "procall.config": {
        "model": ("model", "registry"),
        "ports": ("ports",),
        "use_cases": ("live", "service"),
        "internal": (),
    },
    "procall.directory": {
        "model": ("models",),
        "ports": ("ports",),
        "use_cases": ("authentication", "delegations", "passwords", "service", "throttle"),
        "internal": ("validation",),
    },
    "procall.journal": {
        "model": ("model",), "ports": ("ports",), "use_cases": ("service",), "internal": (),
    },
    "procall.policies": {
        "model": ("model",), "ports": ("ports",), "use_cases": ("service",), "internal": (),
    },
    "procall.leases": {
        "model": ("model",), "ports": ("ports",), "use_cases": ("service",), "internal": (),
    },
    "procall.outbox": {
        "model": (), "ports": ("ports",), "use_cases": ("writer",), "internal": ("codec",),
    },
    "procall.presence": {
        "model": ("model",),
        "ports": ("ports",),
        "use_cases": ("manager", "policy"),
        "internal": ("contact_reads",),
    },
    "procall.routing": {
        "model": ("models",),
        "ports": ("ports",),
        "use_cases": ("balance", "registration", "selection", "service", "topology"),
        "internal": (),
    },
    "procall.session": {
        "model": ("events", "tokens"),
        "ports": ("ports", "revocations"),
        "use_cases": ("hub", "manager", "moves", "openings", "resume"),
        "internal": (),
    },
}  # fmt: skip


def _documented(module: ModuleType, name: str) -> None:
    item = getattr(module, name)
    if inspect.isclass(item) or inspect.isfunction(item):
        assert item.__doc__, f"{module.__name__}.{name} has no docstring"


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names_are_pinned_and_documented(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name} is in __all__ but missing"
        _documented(loaded, name)


def test_every_domain_package_has_a_face() -> None:
    """Every package of procall with a model module has an ``__init__`` and a row in FACES."""
    root = Path(procall.__file__).parent
    domain = {
        f"procall.{path.parent.name}"
        for path in root.glob("*/model*.py")
        if path.name in ("model.py", "models.py")
    }
    assert domain <= set(FACES), f"domain packages without a face row: {domain - set(FACES)}"
    for package in FACES:
        assert (root / package.removeprefix("procall.") / "__init__.py").is_file(), package


@pytest.mark.parametrize("package", sorted(FACES))
def test_the_face_rule(package: str) -> None:
    """The package re-exports its model, ports and use-cases, the very same objects."""
    face = FACES[package]
    loaded = importlib.import_module(package)
    modules = {info.name for info in pkgutil.iter_modules(loaded.__path__)}
    placed = {name for names in face.values() for name in names}
    assert modules == placed, f"{package}: place each module in FACES: {modules ^ placed}"
    exported = set(loaded.__all__)
    for kind in ("model", "ports", "use_cases"):
        for name in face[kind]:
            module = importlib.import_module(f"{package}.{name}")
            wanted = {
                public
                for public in module.__all__
                if kind != "use_cases" or inspect.isclass(getattr(module, public))
            }
            missing = wanted - exported
            assert not missing, f"{package} does not re-export {sorted(missing)} of {name}"
            for public in wanted:
                assert getattr(loaded, public) is getattr(module, public), f"{package}.{public}"


def test_public_methods_of_the_client_are_documented() -> None:
    from procall.client import ProcallClient

    for name, member in vars(ProcallClient).items():
        if name.startswith("_"):
            continue
        target = (
            member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        )
        assert getattr(target, "__doc__", None), f"ProcallClient.{name} has no docstring"


def test_error_reasons_match_the_contract() -> None:
    """Every reason the domain errors default to is declared in ErrorReason."""
    from procall import errors
    from procall.api.common.v1 import error_reason_pb2

    declared = {name.removeprefix("ERROR_REASON_") for name in error_reason_pb2.ErrorReason.keys()}
    defaults = {
        cls.default_reason
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ProcallError)
    }
    assert defaults <= declared
