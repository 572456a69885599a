"""Presence between domain objects and protobuf messages."""

from __future__ import annotations

from procall.api.presence.v1 import presence_pb2
from procall.presence.model import Availability, Capabilities, Presence, TelephonyState
from procall.servers.codecs.time import seconds_of, timestamp

__all__ = [
    "availability_from_proto",
    "capabilities_from_proto",
    "presence_from_proto",
    "presence_to_proto",
]

# enum mappings, computed once (every change is encoded and decoded on the hot path)
_AVAILABILITY_TO_PROTO = {
    a: presence_pb2.Availability.Value(f"AVAILABILITY_{a.value}") for a in Availability
}
_AVAILABILITY_FROM_PROTO: dict[int, Availability | None] = {
    v: a for a, v in _AVAILABILITY_TO_PROTO.items()
}
_AVAILABILITY_FROM_PROTO[presence_pb2.AVAILABILITY_UNSPECIFIED] = None
_TELEPHONY_TO_PROTO = {
    t: presence_pb2.TelephonyState.Value(f"TELEPHONY_STATE_{t.value}") for t in TelephonyState
}
_TELEPHONY_FROM_PROTO = {v: t for t, v in _TELEPHONY_TO_PROTO.items()}


def presence_to_proto(presence: Presence) -> presence_pb2.Presence:
    """The wire form of a presence."""
    return presence_pb2.Presence(
        user_id=presence.user_id,
        availability=_AVAILABILITY_TO_PROTO[presence.availability],
        note=presence.note,
        telephony_state=_TELEPHONY_TO_PROTO[presence.telephony],
        capabilities=presence_pb2.Capabilities(
            chat=presence.capabilities.chat,
            audio=presence.capabilities.audio,
            video=presence.capabilities.video,
            screen_share=presence.capabilities.screen_share,
            conference=presence.capabilities.conference,
        ),
        version=presence.version,
        set_by_user_id=presence.set_by,
        update_time=timestamp(presence.update_time),
    )


def availability_from_proto(value: int) -> Availability | None:
    """The domain availability of a wire value; None for UNSPECIFIED."""
    try:
        return _AVAILABILITY_FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"unknown availability {value}") from None


def capabilities_from_proto(message: presence_pb2.Capabilities) -> Capabilities:
    """The domain capabilities of a wire message."""
    return Capabilities(
        chat=message.chat,
        audio=message.audio,
        video=message.video,
        screen_share=message.screen_share,
        conference=message.conference,
    )


def presence_from_proto(message: presence_pb2.Presence) -> Presence:
    """The domain presence of a wire message (as sent between servers)."""
    return Presence(
        user_id=message.user_id,
        availability=availability_from_proto(message.availability) or Availability.OFFLINE,
        note=message.note,
        telephony=_TELEPHONY_FROM_PROTO.get(message.telephony_state, TelephonyState.UNSPECIFIED),
        capabilities=capabilities_from_proto(message.capabilities),
        version=message.version,
        update_time=seconds_of(message.update_time),
        set_by=message.set_by_user_id,
    )
