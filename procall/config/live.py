"""A server's live view of its configuration: the global properties and its own local
ones, typed, with callbacks for the parts that apply a change without a restart.

The view only moves forward: a value replaces the one held when its version is higher,
so a late or repeated notification, or a periodic re-read racing a notification, never
brings an older value back. A stored value this release cannot parse (a range narrowed
since it was written) is logged and the default is used instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from procall.config.model import ConfigValue, PropertyKey, PropertyValue, Scope
from procall.config.ports import ConfigStore
from procall.config.registry import PropertyRegistry
from procall.errors import InvalidArgument

__all__ = ["LiveConfig"]

_log = logging.getLogger(__name__)

#: Called with a property's new typed value.
Listener = Callable[[ConfigValue], None]


class LiveConfig:
    """The values this server runs with (see the module doc)."""

    def __init__(self, registry: PropertyRegistry, server_id: str) -> None:
        self.registry = registry
        self.server_id = server_id
        self._values: dict[str, PropertyValue] = {}
        self._listeners: dict[str, list[Listener]] = {}

    def key_of(self, name: str) -> PropertyKey:
        """The key this server reads ``name`` under."""
        spec = self.registry.spec(name)
        server = self.server_id if spec.scope is Scope.LOCAL else ""
        return PropertyKey(spec.scope, server, name)

    def concerns(self, key: PropertyKey) -> bool:
        """Whether ``key`` is a property this server runs with."""
        if key.name not in self.registry:
            return False
        return self.key_of(key.name) == key

    def stored(self, name: str) -> PropertyValue:
        """The value held for ``name`` (its default, version 0, when never set)."""
        held = self._values.get(name)
        if held is not None:
            return held
        return PropertyValue(self.key_of(name), self.registry.spec(name).default)

    def value(self, name: str) -> ConfigValue:
        """The typed value of ``name`` this server runs with."""
        spec = self.registry.spec(name)
        held = self._values.get(name)
        if held is None:
            return spec.parse(spec.default)
        try:
            return spec.parse(held.value)
        except InvalidArgument:
            return spec.parse(spec.default)

    def watch(self, name: str, listener: Listener) -> None:
        """Call ``listener`` with the new value whenever ``name`` changes (live properties)."""
        if not self.registry.spec(name).live:
            raise ValueError(f"{name} is not applied live")
        self._listeners.setdefault(name, []).append(listener)

    def versions(self) -> dict[str, int]:
        """The version held of every property that was set."""
        return {name: held.version for name, held in self._values.items()}

    def snapshot(self) -> list[PropertyValue]:
        """Every value held (set ones only), by name: what the cache file keeps."""
        return [self._values[name] for name in sorted(self._values)]

    def apply(self, value: PropertyValue) -> bool:
        """Take ``value`` when it concerns this server and is newer than the one held;
        tell the listeners. Returns whether it was taken."""
        if not self.concerns(value.key):
            return False
        held = self._values.get(value.key.name)
        if held is not None and held.version >= value.version:
            return False
        spec = self.registry.spec(value.key.name)
        try:
            spec.parse(value.value)
        except InvalidArgument as exc:
            _log.warning(
                "configuration %s: stored value %r refused (%s); using the default %r",
                value.key.resource,
                value.value,
                exc.message,
                spec.default,
            )
        before = self.value(spec.name)
        self._values[spec.name] = value
        after = self.value(spec.name)
        if after != before:
            for listener in self._listeners.get(spec.name, ()):
                try:
                    listener(after)
                except Exception:  # one part failing to apply must not stop the others
                    _log.exception("applying configuration %s failed", spec.name)
        return True

    def apply_all(self, values: Iterable[PropertyValue]) -> int:
        """Take every newer value of ``values``; returns how many were taken."""
        return sum(self.apply(value) for value in values)

    async def refresh(self, store: ConfigStore) -> int:
        """Read every value of this server from ``store`` and take the newer ones
        (``Unavailable`` when the database does not answer); returns how many changed."""
        values = [
            *await store.values(Scope.GLOBAL, ""),
            *await store.values(Scope.LOCAL, self.server_id),
        ]
        return self.apply_all(values)

    async def refresh_one(self, store: ConfigStore, key: PropertyKey) -> bool:
        """Re-read one property from ``store`` and take it when newer."""
        if not self.concerns(key):
            return False
        found = await store.get(key)
        return found is not None and self.apply(found)
