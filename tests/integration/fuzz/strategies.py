"""Hypothesis strategies that build random and hostile requests from protobuf descriptors.

Every field gets values of its own type, biased towards the edges: empty and huge
strings, NUL, right-to-left overrides, emoji and combining marks, injection strings,
ids of real users and servers mixed with made-up ones, hostile page tokens, integers
at the limits of their width, NaN and infinities, enum numbers the contract does not
define, repeated fields far longer than any client sends, nested messages, field masks
naming fields that exist and fields that do not. ``raw_bodies`` gives bytes that are
not a valid message at all (random, truncated, invalid UTF-8 such as an encoded lone
surrogate, which no protobuf library would serialise from a Python ``str``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

__all__ = ["FuzzIds", "message_strategy", "raw_bodies", "request_class"]

_FD = _descriptor.FieldDescriptor

#: Nested messages below this depth are left empty (no API type is recursive, but Event
#: carries many): keeps examples small and generation fast.
MAX_DEPTH = 3

HOSTILE_TEXT: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark + Hebrew
    "مرحبا",
    "👩\u200d👩\u200d👧\u200d👦",  # ZWJ family
    "🏳️\u200d🌈",
    "e\u0301\u0301\u0301\u0301\u0301\u0301",  # stacked combining marks
    "\ufeff",  # byte order mark
    "\uffff\ufffe",  # noncharacters
    "\U0010ffff",
    "\r\n\t\x0b\x0c",
    "' OR '1'='1' --",
    "'; DROP TABLE users; --",
    "*)(uid=*))(|(uid=*",
    "admin)(objectClass=*",
    "\\2a\\28\\29",
    "../../../../etc/passwd",
    "%s%s%s%n",
    "{0}{1}{__class__}",
    "${jndi:ldap://127.0.0.1/a}",
    "<script>alert(1)</script>",
    "-1",
    "0",
    "9" * 40,
    "null",
    "undefined",
    "NaN",
)

HOSTILE_PAGE_TOKENS: tuple[str, ...] = (
    "",
    "=",
    "====",
    "AAAA",
    "eyJ9",  # base64 of a broken JSON object
    "eyJvZmZzZXQiOiAtMX0=",  # {"offset": -1}
    "eyJvZmZzZXQiOiAxZTMwMH0",  # {"offset": 1e300}, unpadded
    "eyJhIjogWzEsIDIsIDNdfQ==",  # {"a": [1, 2, 3]}
    "bnVsbA==",  # null
    "W10=",  # []
    "gASVAAAAAAAAAAB9lC4=",  # a pickle
    "%00%ff",
    "-" * 3000,
    "\U0001f600",
)

_INT_RANGES: dict[int, tuple[int, int]] = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1),
    _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_UINT64: (0, 2**64 - 1),
    _FD.TYPE_FIXED64: (0, 2**64 - 1),
}


class FuzzIds:
    """Real identifiers of the running system, mixed into every string field.

    Without them almost every request would fail its first lookup; with them the fuzz
    reaches the code behind it (another user's data, a real server, a real session).
    """

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self.ids = tuple(ids)


def request_class(descriptor: _descriptor.Descriptor) -> type[Message]:
    """The generated class of a message descriptor."""
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def _integers(field_type: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field_type]
    edges = sorted({low, high, 0, 1, -1 if low < 0 else 2, 1000, high // 2})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _text(ids: FuzzIds) -> st.SearchStrategy[str]:
    # Python cannot encode lone surrogates to UTF-8; raw_bodies sends them as bytes
    characters = st.characters(exclude_categories=["Cs"])
    options: list[st.SearchStrategy[str]] = [
        st.text(characters, max_size=24),
        st.sampled_from(HOSTILE_TEXT),
        st.sampled_from((1_000, 70_000, 1_100_000)).map(lambda n: "x" * n),
        st.sampled_from(("ab", "é", "😀")).flatmap(
            lambda s: st.sampled_from((10_000, 300_000)).map(lambda n: s * n)
        ),
    ]
    if ids.ids:
        options.insert(0, st.sampled_from(ids.ids))
        # a real id disguised: padded, upper-cased, with a NUL or a wildcard appended
        options.append(
            st.tuples(
                st.sampled_from(ids.ids), st.sampled_from((" {} ", "{}\x00", "{}*", "{}%"))
            ).map(lambda pair: pair[1].format(pair[0]))
        )
        options.append(st.sampled_from(ids.ids).map(str.upper))
    return st.one_of(options)


def _scalar(field: _FD, ids: FuzzIds) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == _FD.TYPE_STRING:
        if field.name.endswith("page_token") or field.name.endswith("resume_token"):
            return st.one_of(st.sampled_from(HOSTILE_PAGE_TOKENS), _text(ids))
        return _text(ids)
    if kind == _FD.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64), st.sampled_from((100_000,)).map(lambda n: b"\xff" * n)
        )
    if kind == _FD.TYPE_BOOL:
        return st.booleans()
    if kind in _INT_RANGES:
        return _integers(kind)
    if kind == _FD.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == _FD.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == _FD.TYPE_ENUM:
        defined = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(defined), st.sampled_from((-1, 9999, 2**31 - 1, -(2**31))))
    raise AssertionError(f"no strategy for field type {kind} of {field.full_name}")


def _field_mask_paths(ids: FuzzIds) -> st.SearchStrategy[list[str]]:
    every_name = _api_field_names()
    path = st.one_of(
        st.sampled_from(every_name),
        st.sampled_from(every_name).map(lambda name: f"{name}.{name}"),
        st.sampled_from(("*", "", "password", "password_hash", "admin", "user_id", "a..b")),
        st.text(max_size=12),
    )
    return st.lists(path, max_size=5)


@cache
def _api_field_names() -> tuple[str, ...]:
    from procall.api.directory.v1 import directory_pb2
    from procall.api.presence.v1 import presence_pb2

    names: set[str] = set()
    for module in (directory_pb2, presence_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            names.update(field.name for field in message.fields)
    return tuple(sorted(names))


def _repeated(
    element: st.SearchStrategy[Any], small: st.SearchStrategy[Any]
) -> st.SearchStrategy[list[Any]]:
    return st.one_of(
        st.lists(element, max_size=4),
        # far more elements than any client sends: one small value repeated
        st.tuples(small, st.sampled_from((200, 20_000))).map(lambda p: [p[0]] * p[1]),
    )


def _small(field: _FD, ids: FuzzIds) -> st.SearchStrategy[Any]:
    """Short values of ``field``'s element type, for very long repeated fields."""
    if field.type == _FD.TYPE_MESSAGE:
        return st.builds(request_class(field.message_type))
    if field.type == _FD.TYPE_STRING:
        return st.one_of(st.sampled_from(ids.ids or ("x",)), st.text(max_size=8))
    if field.type == _FD.TYPE_BYTES:
        return st.binary(max_size=8)
    return _scalar(field, ids)


def _value(field: _FD, ids: FuzzIds, depth: int) -> st.SearchStrategy[Any]:
    if field.type == _FD.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            return st.dictionaries(_scalar(key_field, ids), _scalar(value_field, ids), max_size=4)
        if field.message_type.full_name == "google.protobuf.FieldMask":
            element: st.SearchStrategy[Any] = _field_mask_paths(ids).map(
                lambda paths: request_class(field.message_type)(paths=paths)
            )
        else:
            element = message_strategy(field.message_type, ids, depth + 1)
    else:
        element = _scalar(field, ids)
    if _is_repeated(field):
        return _repeated(element, _small(field, ids))
    return element


def _is_repeated(field: _FD) -> bool:
    repeated: bool = field.is_repeated
    return repeated


def _assign(message: Message, field: _FD, value: Any) -> None:
    if field.type == _FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        for key, item in value.items():
            target[key] = item
    elif _is_repeated(field):
        target = getattr(message, field.name)
        if field.type == _FD.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == _FD.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def message_strategy(
    descriptor: _descriptor.Descriptor, ids: FuzzIds, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor`` with a random subset of fields set to hostile values."""
    cls = request_class(descriptor)
    if depth >= MAX_DEPTH or not descriptor.fields:
        return st.builds(cls)
    fields = {field.name: field for field in descriptor.fields}
    optional = {name: _value(field, ids, depth) for name, field in fields.items()}

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            _assign(message, fields[name], value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


def _nested(depth: int) -> bytes:
    body = b""
    for _ in range(depth):  # field 1, length-delimited, around the previous body
        body = b"\x0a" + _varint(len(body)) + body
    return body


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


CRAFTED_BODIES: tuple[bytes, ...] = (
    b"\x0a\x03\xed\xa0\x80",  # field 1 as a string holding an encoded lone surrogate
    b"\x12\x04\xc0\xaf\xff\xfe",  # field 2: overlong and invalid UTF-8
    b"\x0a\x02a\x00\x1a\x01\xff",  # valid-looking string, then invalid UTF-8 in field 3
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
    b"\x08\x80",  # truncated varint
    b"\x0a\xff\xff\xff\xff\x0f",  # length far past the end
    b"\x0d\x00\x00",  # truncated fixed32
    b"\x0b\x0c",  # an empty group (deprecated wire type)
    b"\x0c",  # end-group without a start
    b"\x00",  # field number 0
    b"\xf8\xff\xff\xff\x0f\x01",  # the largest field number, unknown
    b"\x0f",  # wire type 7 does not exist
    _nested(120),  # deeper than the parser's recursion limit (100)
    _nested(60),
    b"\x0a\x00" * 5000,  # one field repeated thousands of times
)


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Request bodies that are not a valid message of any type."""
    return st.one_of(
        st.sampled_from(CRAFTED_BODIES),
        st.binary(min_size=1, max_size=256),
        st.tuples(st.sampled_from(CRAFTED_BODIES), st.binary(max_size=16)).map(
            lambda pair: pair[1] + pair[0]
        ),
    )
