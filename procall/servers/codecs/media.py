"""Media codecs: ``procall.media`` registry views <-> ``procall.mesh.media.v1`` messages."""

from __future__ import annotations

from procall.media.bridges import CLOSED, CONNECTED, CONNECTING, BridgeInfo, LegInfo, LegState
from procall.mesh.media.v1 import media_pb2
from procall.servers.codecs.time import timestamp

__all__ = ["bridge_to_proto", "leg_to_proto"]

_LEG_STATES: dict[LegState, media_pb2.LegState.ValueType] = {
    CONNECTING: media_pb2.LEG_STATE_CONNECTING,
    CONNECTED: media_pb2.LEG_STATE_CONNECTED,
    CLOSED: media_pb2.LEG_STATE_CLOSED,
}


def leg_to_proto(leg: LegInfo) -> media_pb2.Leg:
    """A leg as the MediaService returns it."""
    return media_pb2.Leg(
        leg_id=leg.leg_id,
        bridge_id=leg.bridge_id,
        user_id=leg.user_id,
        state=_LEG_STATES.get(leg.state, media_pb2.LEG_STATE_UNSPECIFIED),
        create_time=timestamp(leg.create_time),
    )


def bridge_to_proto(bridge: BridgeInfo) -> media_pb2.Bridge:
    """A bridge with its legs."""
    return media_pb2.Bridge(
        bridge_id=bridge.bridge_id, legs=[leg_to_proto(leg) for leg in bridge.legs]
    )
