"""The durable write path: central database first, a local durable outbox when it is down.

``DurableWriter`` (transport-free) decides where each write goes; the ports
``CentralWriter`` and ``Outbox`` are implemented in ``procall.storage`` (the SQL
central writer and ``procall.storage.outbox.SqliteOutbox``); ``codec`` turns records
into the bytes the outbox keeps.
"""

from __future__ import annotations

from procall.outbox.codec import CodecError, decode_record, encode_record
from procall.outbox.ports import CentralWriter, Outbox, Record
from procall.outbox.writer import DurableWriter, Persisted

__all__ = [
    "CentralWriter",
    "CodecError",
    "DurableWriter",
    "Outbox",
    "Persisted",
    "Record",
    "decode_record",
    "encode_record",
]
