"""Records <-> bytes for the local outbox.

A record is stored as JSON ``{"kind": <tag>, "data": {<fields>}}``. The tag lives
outside the fields because ``JournalEntry`` has a field called ``kind`` of its own.

Exactness matters more than beauty here: an outbox record is the only copy of an
acknowledged write until it reaches the central database.

* Text round-trips code point for code point. JSON escapes control characters;
  the JSON text is then encoded as UTF-8 with ``surrogatepass`` so that even lone
  surrogates (which a protobuf string can never hold, but a Python ``str`` can) come
  back unchanged instead of failing the write. Non-ASCII text stays one to four bytes
  per character rather than a six-byte ``\\uXXXX`` escape each.
* Floats use ``repr``, the shortest text that parses back to the same double;
  NaN and infinities are written as JSON's usual ``NaN`` / ``Infinity`` extensions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from procall.chat.model import ChatMessage, ReadMarker
from procall.journal.model import JournalEntry, JournalKind
from procall.outbox.ports import Record

__all__ = [
    "KIND_JOURNAL_ENTRY",
    "KIND_MESSAGE",
    "KIND_READ_MARKER",
    "CodecError",
    "decode_record",
    "encode_record",
    "encode_text",
    "record_kind",
]

#: Tag of a ``ChatMessage``.
KIND_MESSAGE = "message"
#: Tag of a ``ReadMarker``.
KIND_READ_MARKER = "read_marker"
#: Tag of a ``JournalEntry``.
KIND_JOURNAL_ENTRY = "journal_entry"

# surrogatepass keeps lone surrogates representable; every other str encodes as plain UTF-8
_ERRORS = "surrogatepass"


class CodecError(ValueError):
    """Bytes that are not an encoded record (corrupt, or written by an unknown version)."""


def encode_text(text: str) -> bytes:
    """``text`` as UTF-8, lone surrogates included (used for indexed key columns too)."""
    return text.encode("utf-8", _ERRORS)


def record_kind(record: Record) -> str:
    """The tag of a record: ``message``, ``read_marker`` or ``journal_entry``."""
    if isinstance(record, ChatMessage):
        return KIND_MESSAGE
    if isinstance(record, ReadMarker):
        return KIND_READ_MARKER
    if isinstance(record, JournalEntry):
        return KIND_JOURNAL_ENTRY
    raise TypeError(f"not an outbox record: {type(record).__name__}")


def encode_record(record: Record) -> bytes:
    """The bytes of one record; ``decode_record`` gives back an equal record."""
    data: dict[str, Any]
    if isinstance(record, ChatMessage):
        data = {
            "conversation_id": record.conversation_id,
            "message_id": int(record.message_id),
            "sender_id": record.sender_id,
            "text": record.text,
            "created_at": float(record.created_at),
            "request_id": record.request_id,
        }
    elif isinstance(record, ReadMarker):
        data = {
            "conversation_id": record.conversation_id,
            "user_id": record.user_id,
            "read_message_id": int(record.read_message_id),
            "read_at": float(record.read_at),
        }
    elif isinstance(record, JournalEntry):
        data = {
            "entry_id": record.entry_id,
            "user_id": record.user_id,
            # the wire value, so a renamed enum member does not break old outboxes
            "kind": int(record.kind),
            "event_time": float(record.event_time),
            "peer_user_id": record.peer_user_id,
            "call_id": record.call_id,
            "duration_ms": None if record.duration_ms is None else int(record.duration_ms),
            "text": record.text,
            "request_id": record.request_id,
        }
    else:
        raise TypeError(f"not an outbox record: {type(record).__name__}")
    text = json.dumps(
        {"kind": record_kind(record), "data": data}, ensure_ascii=False, separators=(",", ":")
    )
    return encode_text(text)


def decode_record(raw: bytes) -> Record:
    """The record encoded in ``raw``; ``CodecError`` when it is not one."""
    try:
        document = json.loads(bytes(raw).decode("utf-8", _ERRORS))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CodecError(f"outbox record is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CodecError("outbox record is not a JSON object")
    kind = document.get("kind")
    data = document.get("data")
    if not isinstance(data, dict):
        raise CodecError("outbox record has no data object")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise CodecError(f"unknown outbox record kind: {kind!r}")
    try:
        return decoder(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"outbox {kind} record is malformed: {exc}") from None


# -- field readers: strict, so that a damaged record fails loudly instead of half-decoding ------


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} is not an integer")
    return value


def _float(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    # json gives an int for "5"; a float field written from an int is still that number
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} is not a number")
    return float(value)


def _message(data: Mapping[str, Any]) -> ChatMessage:
    return ChatMessage(
        conversation_id=_str(data, "conversation_id"),
        message_id=_int(data, "message_id"),
        sender_id=_str(data, "sender_id"),
        text=_str(data, "text"),
        created_at=_float(data, "created_at"),
        request_id=_str(data, "request_id"),
    )


def _read_marker(data: Mapping[str, Any]) -> ReadMarker:
    return ReadMarker(
        conversation_id=_str(data, "conversation_id"),
        user_id=_str(data, "user_id"),
        read_message_id=_int(data, "read_message_id"),
        read_at=_float(data, "read_at"),
    )


def _journal_entry(data: Mapping[str, Any]) -> JournalEntry:
    duration = data["duration_ms"]
    return JournalEntry(
        entry_id=_str(data, "entry_id"),
        user_id=_str(data, "user_id"),
        kind=JournalKind(_int(data, "kind")),
        event_time=_float(data, "event_time"),
        peer_user_id=_str(data, "peer_user_id"),
        call_id=_str(data, "call_id"),
        duration_ms=None if duration is None else _int(data, "duration_ms"),
        text=_str(data, "text"),
        request_id=_str(data, "request_id"),
    )


_DECODERS: dict[str, Callable[[Mapping[str, Any]], Record]] = {
    KIND_MESSAGE: _message,
    KIND_READ_MARKER: _read_marker,
    KIND_JOURNAL_ENTRY: _journal_entry,
}
