"""The outbox codec: every record kind round-trips exactly; damaged bytes fail loudly."""

from __future__ import annotations

import json
import math
import sys

import pytest

from procall.chat.model import ChatMessage, ReadMarker
from procall.journal.model import JournalEntry, JournalKind
from procall.outbox.codec import (
    KIND_JOURNAL_ENTRY,
    KIND_MESSAGE,
    KIND_READ_MARKER,
    CodecError,
    decode_record,
    encode_record,
    record_kind,
)
from procall.outbox.ports import Record

TRICKY_TEXTS = [
    "",
    "plain",
    "\x00\x01\x1f\x7f\x80\x9f",  # NUL, C0 and C1 controls
    "line\nbreak\r\ttab\x0b\x0c",
    '"quoted" \\backslash\\ /slash',
    "\u2028\u2029",  # JS line separators
    "\ufeff\ufffe\uffff",  # BOM, non-characters
    "e\u0301 \u00e9",  # combining vs precomposed must stay distinct
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ family
    "\U0001f1e9\U0001f1ea \U00010000 \U0010ffff",  # flags, first and last astral
    "\u202eRTL override\u202c \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "\ud800",  # lone high surrogate
    "\udfff",  # lone low surrogate
    "\ud83d\ude00",  # a surrogate *pair* as two code points: not the same as U+1F600
    "a\udc80b\ud800\ud800",
    "\\ud83d\\ude00",  # text that looks like a JSON escape
    "x" * 16 * 1024,
]

TRICKY_FLOATS = [
    0.0,
    -0.0,
    0.1,
    1 / 3,
    1_700_000_000.123456,
    5e-324,  # smallest subnormal
    2.2250738585072014e-308,
    sys.float_info.max,
    math.inf,
    -math.inf,
]


def records_with(text: str, number: float) -> list[Record]:
    return [
        ChatMessage(text + "c", 2**63 - 1, text + "s", text, number, text + "r"),
        ReadMarker(text, text, 0, number),
        JournalEntry(
            entry_id=text,
            user_id=text,
            kind=JournalKind.CALL_MISSED,
            event_time=number,
            peer_user_id=text,
            call_id=text,
            duration_ms=None,
            text=text,
            request_id=text,
        ),
        JournalEntry("e", "u", JournalKind.NOTE, number, duration_ms=0),
    ]


# (loops rather than parametrize: each test pays for the suite's per-test teardown)


def test_text_round_trips_code_point_for_code_point() -> None:
    for text in TRICKY_TEXTS:
        for record in records_with(text, 1.5):
            decoded = decode_record(encode_record(record))
            assert decoded == record, ascii(text)
            assert type(decoded) is type(record)


def test_floats_round_trip_bit_for_bit() -> None:
    for number in TRICKY_FLOATS:
        for record in records_with("t", number):
            decoded = decode_record(encode_record(record))
            assert decoded == record, repr(number)
            if isinstance(decoded, JournalEntry):  # -0.0 stays -0.0
                assert math.copysign(1.0, decoded.event_time) == math.copysign(1.0, number)


def test_nan_round_trips() -> None:
    decoded = decode_record(encode_record(ReadMarker("c", "u", 1, math.nan)))
    assert isinstance(decoded, ReadMarker) and math.isnan(decoded.read_at)


def test_enum_and_optional_fields_keep_their_types() -> None:
    entry = JournalEntry("e", "u", JournalKind.CALL_PLACED, 1.0, duration_ms=61_000)
    decoded = decode_record(encode_record(entry))
    assert isinstance(decoded, JournalEntry)
    assert decoded.kind is JournalKind.CALL_PLACED
    assert decoded.duration_ms == 61_000
    assert isinstance(decoded.event_time, float)


def test_non_ascii_text_is_stored_compactly() -> None:
    text = "\u4f60\u597d" * 1000  # 3 bytes each in UTF-8, 6 as \\uXXXX escapes
    encoded = encode_record(ChatMessage("c", 1, "u", text, 1.0, "r"))
    assert len(encoded) < len(text.encode()) + 200


def test_kinds() -> None:
    message, marker, entry, _ = records_with("x", 1.0)
    assert record_kind(message) == KIND_MESSAGE
    assert record_kind(marker) == KIND_READ_MARKER
    assert record_kind(entry) == KIND_JOURNAL_ENTRY
    with pytest.raises(TypeError):
        record_kind("not a record")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_record(object())  # type: ignore[arg-type]


DAMAGED = [
    b"",
    b"not json",
    b"[]",
    b'{"kind": "message"}',
    b'{"kind": "wormhole", "data": {}}',
    b'{"kind": "read_marker", "data": {"conversation_id": "c"}}',
    b'{"kind": "read_marker", "data": {"conversation_id": 1, "user_id": "u",'
    b' "read_message_id": 1, "read_at": 1.0}}',
    b'{"kind": "read_marker", "data": {"conversation_id": "c", "user_id": "u",'
    b' "read_message_id": true, "read_at": 1.0}}',
    b'{"kind": "read_marker", "data": {"conversation_id": "c", "user_id": "u",'
    b' "read_message_id": 1.5, "read_at": 1.0}}',
    b"\xff\xfe",
]


def test_damaged_bytes_fail_loudly() -> None:
    for raw in DAMAGED:
        with pytest.raises(CodecError):
            decode_record(raw)


def test_the_format_is_tagged_json() -> None:
    document = json.loads(encode_record(ReadMarker("c", "u", 7, 2.5)))
    assert document == {
        "kind": "read_marker",
        "data": {"conversation_id": "c", "user_id": "u", "read_message_id": 7, "read_at": 2.5},
    }
