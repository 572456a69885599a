"""Configuration properties: their types, scopes, definitions and stored values.

A property is defined once in code (``PropertySpec``: type, default, range, scope,
description, whether servers apply it live) and stored as text in the configuration
database with a version that grows by one per write. Parsing and range checks live here,
so that a bad value is refused the same way wherever it comes from (an admin's write, the
database, the cache file).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from procall.errors import InvalidArgument

__all__ = [
    "ConfigValue",
    "PropertyKey",
    "PropertySpec",
    "PropertyType",
    "PropertyValue",
    "Scope",
    "resource_of",
]

#: What a parsed property value is.
ConfigValue = int | float | bool | str

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: Longest value text accepted (string properties).
MAX_VALUE_CHARS = 4096


class PropertyType(enum.Enum):
    """How a property's text is parsed."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    #: Seconds, as a float ("30", "0.5").
    DURATION = "duration"


class Scope(enum.Enum):
    """Whether a property applies to every server or to one."""

    GLOBAL = "global"
    LOCAL = "local"


def resource_of(scope: Scope, server_id: str, name: str) -> str:
    """The lease resource of a property: ``config/global/<name>`` or
    ``config/local/<server_id>/<name>``."""
    if scope is Scope.GLOBAL:
        return f"config/global/{name}"
    return f"config/local/{server_id}/{name}"


@dataclass(frozen=True)
class PropertyKey:
    """Where one property value is stored: its scope, its server (LOCAL only) and name."""

    scope: Scope
    #: The server a LOCAL value applies to; empty for GLOBAL.
    server_id: str
    name: str

    @property
    def resource(self) -> str:
        """The lease resource naming this property."""
        return resource_of(self.scope, self.server_id, self.name)


@dataclass(frozen=True)
class PropertySpec:
    """The definition of one property."""

    name: str
    type: PropertyType
    #: The value while nobody set one, as text (valid by construction: see ``check``).
    default: str
    description: str
    scope: Scope = Scope.GLOBAL
    #: Whether running servers apply a change without a restart.
    live: bool = True
    #: Inclusive bounds of numbers (INT, FLOAT, DURATION); None: unbounded.
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, text: str, *, field: str = "property.value") -> ConfigValue:
        """The typed value of ``text``; ``InvalidArgument`` naming ``field`` when it is
        not of the property's type or out of its range."""
        if len(text) > MAX_VALUE_CHARS:
            raise InvalidArgument.field(field, f"is longer than {MAX_VALUE_CHARS} characters")
        if "\x00" in text:
            raise InvalidArgument.field(field, "must not contain NUL characters")
        kind = self.type
        if kind is PropertyType.STRING:
            return text
        stripped = text.strip().lower()
        if kind is PropertyType.BOOL:
            if stripped in _TRUE:
                return True
            if stripped in _FALSE:
                return False
            raise InvalidArgument.field(field, f"{self.name} is a bool (true or false)")
        number: int | float
        try:
            number = int(stripped) if kind is PropertyType.INT else float(stripped)
        except ValueError:
            what = "an integer" if kind is PropertyType.INT else "a number"
            unit = " of seconds" if kind is PropertyType.DURATION else ""
            raise InvalidArgument.field(field, f"{self.name} is {what}{unit}") from None
        if not math.isfinite(number):
            raise InvalidArgument.field(field, f"{self.name} must be finite")
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise InvalidArgument.field(
                field, f"{self.name} must be within {self._range()}, not {text.strip()}"
            )
        return number

    def canonical(self, text: str) -> str:
        """``text`` as stored: parsed, then written back in one form ("TRUE" -> "true")."""
        value = self.parse(text)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return repr(value)
        return str(value)

    def _range(self) -> str:
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"[{low}, {high}]"

    def check(self) -> None:
        """Raise ``ValueError`` when the definition itself is wrong (a bad default)."""
        try:
            self.parse(self.default)
        except InvalidArgument as exc:
            raise ValueError(f"property {self.name}: bad default: {exc.message}") from None


@dataclass(frozen=True)
class PropertyValue:
    """A property's value as stored (or its default: version 0, never written)."""

    key: PropertyKey
    #: The value as text.
    value: str
    #: Grows by one per write; 0 for a property never set.
    version: int = 0
    #: Seconds since the epoch of the last write (0.0 when never set).
    update_time: float = 0.0
    #: The admin who wrote it last.
    updated_by: str = ""
    #: The highest lease fencing number it was written under (0: none).
    fencing: int = 0
