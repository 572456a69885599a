"""Configuration properties between protobuf and ``procall.config``."""

from __future__ import annotations

from procall.api.admin.v1 import admin_pb2
from procall.config.model import PropertyValue, Scope
from procall.errors import InvalidArgument
from procall.servers.codecs.time import timestamp

__all__ = ["property_to_proto", "scope_from_proto", "scope_to_proto"]

_SCOPES: dict[int, Scope] = {
    admin_pb2.CONFIG_SCOPE_GLOBAL: Scope.GLOBAL,
    admin_pb2.CONFIG_SCOPE_LOCAL: Scope.LOCAL,
}
_PROTO_SCOPES: dict[Scope, admin_pb2.ConfigScope.ValueType] = {
    Scope.GLOBAL: admin_pb2.CONFIG_SCOPE_GLOBAL,
    Scope.LOCAL: admin_pb2.CONFIG_SCOPE_LOCAL,
}


def scope_from_proto(value: int, field: str, *, required: bool = True) -> Scope | None:
    """The scope of a request field; UNSPECIFIED is ``InvalidArgument`` when ``required``,
    else None (the property's own scope)."""
    scope = _SCOPES.get(value)
    if scope is None and (required or value != admin_pb2.CONFIG_SCOPE_UNSPECIFIED):
        raise InvalidArgument.field(field, "must be CONFIG_SCOPE_GLOBAL or CONFIG_SCOPE_LOCAL")
    return scope


def scope_to_proto(scope: Scope) -> admin_pb2.ConfigScope.ValueType:
    """The protobuf enum of a scope."""
    return _PROTO_SCOPES[scope]


def property_to_proto(value: PropertyValue) -> admin_pb2.ConfigProperty:
    """A property as the API shows it (no update_time for a property never set)."""
    message = admin_pb2.ConfigProperty(
        name=value.key.name,
        scope=scope_to_proto(value.key.scope),
        server_id=value.key.server_id,
        value=value.value,
        version=value.version,
        updated_by_user_id=value.updated_by,
    )
    if value.version:
        message.update_time.CopyFrom(timestamp(value.update_time))
    return message
