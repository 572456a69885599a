"""Property definitions: parsing by type, ranges, defaults, the registry's names."""

from __future__ import annotations

import pytest

from procall.config import (
    UCSERVER_PROPERTIES,
    PropertyKey,
    PropertyRegistry,
    PropertySpec,
    PropertyType,
    Scope,
    resource_of,
)
from procall.errors import InvalidArgument


def _violation(exc: pytest.ExceptionInfo[InvalidArgument]) -> str:
    assert len(exc.value.violations) == 1
    return exc.value.violations[0].field


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (PropertyType.INT, "42", 42),
        (PropertyType.INT, " 7 ", 7),
        (PropertyType.FLOAT, "2.5", 2.5),
        (PropertyType.FLOAT, "3", 3.0),
        (PropertyType.DURATION, "0.25", 0.25),
        (PropertyType.BOOL, "TRUE", True),
        (PropertyType.BOOL, "off", False),
        (PropertyType.STRING, " as is ", " as is "),
    ],
)
def test_values_parse_by_type(kind: PropertyType, text: str, expected: object) -> None:
    spec = PropertySpec("x.y", kind, "1" if kind is not PropertyType.BOOL else "true", "d")
    assert spec.parse(text) == expected
    assert type(spec.parse(text)) is type(expected)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (PropertyType.INT, "4.5"),
        (PropertyType.INT, "ten"),
        (PropertyType.FLOAT, "nan"),
        (PropertyType.FLOAT, "inf"),
        (PropertyType.DURATION, "30s"),
        (PropertyType.BOOL, "maybe"),
        (PropertyType.STRING, "a\x00b"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_value_field(kind: PropertyType, text: str) -> None:
    spec = PropertySpec("x.y", kind, "1" if kind is not PropertyType.BOOL else "true", "d")
    with pytest.raises(InvalidArgument) as exc:
        spec.parse(text)
    assert _violation(exc) == "property.value"


def test_ranges_are_inclusive() -> None:
    spec = PropertySpec("calls.x", PropertyType.DURATION, "5", "d", minimum=1, maximum=10)
    assert spec.parse("1") == 1.0 and spec.parse("10") == 10.0
    for bad in ("0.99", "10.01", "-3"):
        with pytest.raises(InvalidArgument) as exc:
            spec.parse(bad)
        assert _violation(exc) == "property.value"
        assert "[1, 10]" in exc.value.message


def test_canonical_text() -> None:
    assert PropertySpec("b", PropertyType.BOOL, "no", "d").canonical("YES") == "true"
    assert PropertySpec("f", PropertyType.FLOAT, "1", "d").canonical("2") == "2.0"
    assert PropertySpec("i", PropertyType.INT, "1", "d").canonical(" 03 ") == "3"


def test_every_built_in_property_is_valid_and_described() -> None:
    registry = PropertyRegistry()
    names = [spec.name for spec in UCSERVER_PROPERTIES]
    assert len(names) == len(set(names))
    for spec in registry.specs():
        assert spec.description.endswith((".", ")"))
        spec.parse(spec.default)
    wanted = {
        "limits.user_rate", "limits.user_burst", "limits.sessions_per_user",
        "limits.stream_idle_seconds", "calls.ring_seconds", "calls.media_probe_seconds",
        "chat.typing_ttl_seconds", "chat.request_id_ttl_seconds", "server.capacity",
        "media.capacity", "limits.overload_lag_ms", "limits.max_in_flight",
    }  # fmt: skip
    assert wanted <= set(names)
    assert registry.spec("server.capacity").scope is Scope.LOCAL
    assert registry.spec("media.capacity").scope is Scope.LOCAL
    assert registry.spec("limits.user_rate").scope is Scope.GLOBAL
    assert [s.name for s in registry.specs(Scope.LOCAL)] == sorted(
        s.name for s in UCSERVER_PROPERTIES if s.scope is Scope.LOCAL
    )


def test_an_unknown_property_names_the_name_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        PropertyRegistry().spec("limits.nope")
    assert _violation(exc) == "property.name"


def test_defaults_come_from_the_settings_file() -> None:
    registry = PropertyRegistry().with_defaults({"calls.ring_seconds": "12"})
    assert registry.spec("calls.ring_seconds").default == "12.0"
    assert PropertyRegistry().spec("calls.ring_seconds").default == "30.0"
    with pytest.raises(ValueError):
        PropertyRegistry().with_defaults({"bogus": "1"})
    with pytest.raises(ValueError):  # a setting of the wrong type is a bug in the settings
        PropertyRegistry().with_defaults({"calls.ring_seconds": "soon"})
    # a settings file may go beyond what admins may set: the range is widened to hold it
    quick = PropertyRegistry().with_defaults({"calls.ring_seconds": "0.2"})
    assert quick.spec("calls.ring_seconds").parse("0.2") == 0.2


def test_a_bad_definition_is_refused() -> None:
    with pytest.raises(ValueError):
        PropertyRegistry([PropertySpec("a", PropertyType.INT, "x", "d")])
    twice = PropertySpec("a", PropertyType.INT, "1", "d")
    with pytest.raises(ValueError):
        PropertyRegistry([twice, twice])


def test_resource_names() -> None:
    assert resource_of(Scope.GLOBAL, "", "calls.ring_seconds") == "config/global/calls.ring_seconds"
    key = PropertyKey(Scope.LOCAL, "uc-1", "server.capacity")
    assert key.resource == "config/local/uc-1/server.capacity"
