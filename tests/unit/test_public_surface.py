"""Pins the public names of the foundation packages, so changes to them are deliberate."""

from __future__ import annotations

import importlib
import inspect

import pytest

SURFACE = {
    "procall.errors": {
        "Aborted",
        "AlreadyExists",
        "ErrorKind",
        "FailedPrecondition",
        "FieldViolation",
        "InvalidArgument",
        "NotFound",
        "PermissionDenied",
        "ProcallError",
        "ResourceExhausted",
        "Unauthenticated",
        "Unavailable",
        "Unimplemented",
    },
    "procall.servers.runtime.grpc_server": {
        "BindError",
        "GrpcServer",
        "ServiceBinding",
        "server_options",
    },
    "procall.servers.runtime.app": {
        "Hook",
        "ServerApp",
        "StartupError",
        "binding",
        "ensure_server_id",
        "not_yet_served",
    },
    "procall.servers.runtime.errors": {"ERROR_DOMAIN", "ErrorMappingInterceptor", "status_for"},
    "procall.servers.runtime.limits": {
        "Identify",
        "LimitsInterceptor",
        "bearer_identify",
        "call_limits",
        "source_of",
    },
    "procall.servers.runtime.audit": {"AuditInterceptor", "AuditRule", "actor_of"},
    "procall.limits": {
        "CLIENT_API_PREFIX",
        "DEFAULT_METHOD_MESSAGE_BYTES",
        "CallLimits",
        "KeyedBuckets",
        "LimitsConfig",
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
        "private_dir",
        "private_file",
        "require_private",
        "write_private",
    },
    "procall.launch.datacenter": {"DataCenter", "DataCenterError", "Endpoint", "run_datacenter"},
    "procall.chat": {
        "ChatMessage",
        "Conversation",
        "ConversationKind",
        "MemberConversation",
        "ReadMarker",
        "direct_conversation_id",
    },
    "procall.journal": {"JournalEntry", "JournalKind", "entry_id_for"},
    "procall.admin_views": {
        "DEFAULT_SESSIONS_PAGE",
        "AdminViews",
        "LicenseCounter",
        "LicenseUsage",
        "LiveServers",
        "LoggedOnSession",
        "LoggedOnSessions",
        "ServerState",
        "SessionFilter",
        "state_of",
    },
    "procall.validation": {
        "MAX_ID_CHARS",
        "MAX_REQUEST_ID_CHARS",
        "check_id",
        "check_ids",
        "check_request_id",
        "check_text",
        "reject_nul",
    },
    "procall.launch.postgres": {
        "PG_USER",
        "PostgresError",
        "PostgresServer",
        "as_pg_user",
        "find_postgres_bindir",
        "postgres_unavailable_reason",
        "run_pg_command",
    },
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        item = getattr(loaded, name)
        if inspect.isclass(item) or inspect.isfunction(item):
            assert item.__doc__, f"{module}.{name} has no docstring"


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
