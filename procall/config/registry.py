"""The properties a UCServer knows: their definitions, by name.

``UCSERVER_PROPERTIES`` lists the settings an administrator changes at run time. Their
defaults here are the built-in ones; a server replaces them with the values of its own
settings file (``PropertyRegistry.with_defaults``), so that a property nobody has set in
the configuration database keeps meaning what the settings file says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from procall.config.model import PropertySpec, PropertyType, Scope
from procall.errors import InvalidArgument

__all__ = ["UCSERVER_PROPERTIES", "PropertyRegistry"]

_INT, _FLOAT, _BOOL, _DURATION = (
    PropertyType.INT,
    PropertyType.FLOAT,
    PropertyType.BOOL,
    PropertyType.DURATION,
)
_DAY = 24 * 3600.0

#: What an administrator can change at run time on UCServers (see the module doc).
UCSERVER_PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec("limits.user_rate", _FLOAT, "100.0",
                 "Requests per second of one user's sessions (administrators are exempt).",
                 minimum=0.1, maximum=100_000),
    PropertySpec("limits.user_burst", _FLOAT, "400.0",
                 "Requests one user's sessions may make at once before the rate applies.",
                 minimum=1, maximum=1_000_000),
    PropertySpec("limits.source_rate", _FLOAT, "50.0",
                 "Requests per second without a session (Login) from one network address.",
                 minimum=0.1, maximum=100_000),
    PropertySpec("limits.source_burst", _FLOAT, "500.0",
                 "Requests at once without a session from one network address.",
                 minimum=1, maximum=1_000_000),
    PropertySpec("limits.streams_per_user", _INT, "10",
                 "Open Connect streams per user on one UCServer.", minimum=1, maximum=1000),
    PropertySpec("limits.sessions_per_user", _INT, "5",
                 "Concurrent sessions (and so licenses) per user.", minimum=1, maximum=1000),
    PropertySpec("limits.stream_idle_seconds", _DURATION, "300.0",
                 "Seconds a stream may stay silent before it is ended; 0 turns the bound off "
                 "(applies to streams opened after the change).", minimum=0, maximum=_DAY),
    PropertySpec("limits.overload_lag_ms", _FLOAT, "100.0",
                 "Event-loop lag (ms) which, held for overload_window_seconds, makes a server "
                 "refuse new client calls (OVERLOADED); 0 turns the check off.",
                 minimum=0, maximum=60_000),
    PropertySpec("limits.max_in_flight", _INT, "2000",
                 "Client calls in progress at once above which new ones are refused "
                 "(OVERLOADED); 0: no cap.", minimum=0, maximum=10_000_000),
    PropertySpec("limits.client_message_bytes", _INT, "262144",
                 "Largest request message of client-facing methods (read at start).",
                 live=False, minimum=1024, maximum=64 * 1024 * 1024),
    PropertySpec("calls.ring_seconds", _DURATION, "30.0",
                 "Seconds a call rings before it ends unanswered (calls placed after the "
                 "change).", minimum=1, maximum=600),
    PropertySpec("calls.media_probe_seconds", _DURATION, "0.5",
                 "Seconds between two probes of each MediaServer carrying this server's calls.",
                 minimum=0.05, maximum=60),
    PropertySpec("calls.ended_ttl_seconds", _DURATION, "300.0",
                 "Seconds an ended call stays readable (read at start).",
                 live=False, minimum=1, maximum=_DAY),
    PropertySpec("chat.typing_ttl_seconds", _DURATION, "6.0",
                 "Seconds a typing indication lasts unless renewed.", minimum=0.5, maximum=300),
    PropertySpec("chat.request_id_ttl_seconds", _DURATION, "86400.0",
                 "Seconds a send's request id is remembered for idempotent retries.",
                 minimum=60, maximum=30 * _DAY),
    PropertySpec("auth.license_pool_size", _INT, "1000",
                 "Licenses in the system-wide pool (read at start).",
                 live=False, minimum=0, maximum=10_000_000),
    PropertySpec("server.capacity", _INT, "5000",
                 "Client sessions this UCServer declares it can carry (sent with its "
                 "heartbeats).", scope=Scope.LOCAL, minimum=0, maximum=10_000_000),
    PropertySpec("chat.outbox_max_records", _INT, "200000",
                 "Records this UCServer's local outbox may hold (read at start).",
                 scope=Scope.LOCAL, live=False, minimum=1000, maximum=100_000_000),
    PropertySpec("media.capacity", _INT, "40",
                 "Concurrent calls a MediaServer declares it can carry, per MediaServer id "
                 "(read by that MediaServer at start).",
                 scope=Scope.LOCAL, live=False, minimum=0, maximum=100_000),
)  # fmt: skip


def _with_default(spec: PropertySpec, text: str) -> PropertySpec:
    """``spec`` with default ``text``: a settings file may go beyond the range admins may
    set (tests ring for half a second), so the range is widened to hold it; a value of the
    wrong type is a ``ValueError``."""
    unbounded = replace(spec, minimum=None, maximum=None)
    try:
        value = unbounded.parse(text)
    except InvalidArgument as exc:
        raise ValueError(f"setting of property {spec.name}: {exc.message}") from None
    minimum, maximum = spec.minimum, spec.maximum
    if isinstance(value, int | float) and not isinstance(value, bool):
        minimum = None if minimum is None else min(minimum, value)
        maximum = None if maximum is None else max(maximum, value)
    return replace(spec, default=unbounded.canonical(text), minimum=minimum, maximum=maximum)


class PropertyRegistry:
    """The definitions of the properties a server knows, by name."""

    def __init__(self, specs: Iterable[PropertySpec] = UCSERVER_PROPERTIES) -> None:
        self._specs: dict[str, PropertySpec] = {}
        for spec in specs:
            spec.check()
            if spec.name in self._specs:
                raise ValueError(f"property {spec.name} is defined twice")
            self._specs[spec.name] = spec

    def with_defaults(self, defaults: Mapping[str, str]) -> PropertyRegistry:
        """The same properties with other defaults (this server's settings file), by name;
        names it does not know are an error."""
        unknown = set(defaults) - set(self._specs)
        if unknown:
            raise ValueError(f"unknown properties: {', '.join(sorted(unknown))}")
        return PropertyRegistry(
            _with_default(spec, defaults[spec.name]) if spec.name in defaults else spec
            for spec in self._specs.values()
        )

    def spec(self, name: str, *, field: str = "property.name") -> PropertySpec:
        """The definition of ``name``; ``InvalidArgument`` naming ``field`` when unknown."""
        found = self._specs.get(name)
        if found is None:
            raise InvalidArgument.field(field, f"no configuration property is named {name!r}")
        return found

    def specs(self, scope: Scope | None = None) -> list[PropertySpec]:
        """Every definition (of ``scope`` when given), by name."""
        return sorted(
            (s for s in self._specs.values() if scope is None or s.scope is scope),
            key=lambda s: s.name,
        )

    def __contains__(self, name: object) -> bool:
        return name in self._specs
