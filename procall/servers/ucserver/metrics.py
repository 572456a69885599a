"""What a UCServer's metrics observe: read at scrape time from the state it keeps.

Connected clients and live sessions (the session hub), events delivered by kind (the
hub's running counts), the peer links' queues, resends and drops, the chat outbox's
depth and the availability of each backend (the health the server already reports in
its heartbeats). Presence fan-out is recorded per change, as it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from procall.api.session.v1 import session_pb2
from procall.routing.models import DependencyHealth
from procall.servers.peering.links import PeerLink, PeerLinks
from procall.servers.ucserver.chat import ChatComponent
from procall.servers.ucserver.presence import PresenceComponent
from procall.session.hub import SessionHub
from procall.telemetry.metrics import FANOUT_BUCKETS, Attributes, ProcessMetrics

__all__ = ["event_kind", "observe_dependencies", "observe_ucserver"]


def event_kind(event: session_pb2.Event) -> str:
    """The name of an event's payload (``presence_changed``, ``message_created``...)."""
    return event.WhichOneof("payload") or "none"


def observe_dependencies(
    metrics: ProcessMetrics, dependencies: Callable[[], Sequence[DependencyHealth]]
) -> None:
    """``procall.dependency.available``: 1 or 0 per backend the server depends on."""

    def read() -> Iterable[tuple[Attributes, int]]:
        return [({"dependency": d.name}, int(d.available)) for d in dependencies()]

    metrics.observe(
        "procall.dependency.available",
        "Whether this server reaches each backend it depends on (1) or not (0)",
        read,
    )


def observe_ucserver(
    metrics: ProcessMetrics,
    hub: SessionHub[session_pb2.Event],
    links: PeerLinks,
    presence: PresenceComponent,
    chat: ChatComponent,
) -> None:
    """Register the UCServer's observed metrics and its presence fan-out histogram."""
    if not metrics.enabled:
        return
    metrics.observe(
        "procall.clients.connected",
        "Client sessions of this server with an open Connect stream",
        lambda: sum(1 for session in hub.sessions() if session.streams),
    )
    metrics.observe("procall.sessions", "Live client sessions homed on this server", hub.__len__)
    metrics.observe(
        "procall.events.delivered",
        "Events appended to client sessions, by kind (rate(): events per second)",
        lambda: [({"kind": kind}, n) for kind, n in list(hub.delivered.items())],
        kind="counter",
    )

    def per_peer(read: Callable[[PeerLink], int]) -> Callable[[], list[tuple[Attributes, int]]]:
        return lambda: [({"peer": peer}, read(link)) for peer, link in list(links.links.items())]

    metrics.observe(
        "procall.peer.queue.depth",
        "Deliveries to each peer UCServer queued or sent but not yet acknowledged",
        per_peer(lambda link: link.unacked),
    )
    metrics.observe(
        "procall.peer.resent",
        "Deliveries sent again to a peer after its stream broke before it acknowledged them",
        per_peer(lambda link: link.resent),
        kind="counter",
    )
    metrics.observe(
        "procall.peer.dropped",
        "Deliveries dropped from a peer's full backlog",
        per_peer(lambda link: link.dropped),
        kind="counter",
    )
    metrics.observe(
        "procall.outbox.depth",
        "Chat writes waiting in the local outbox for the central database",
        lambda: chat.outbox_depth,
    )
    fanout = metrics.histogram(
        "procall.presence.fanout",
        "Local deliveries of each presence change (watchers' and the user's own sessions)",
        "",
        FANOUT_BUCKETS,
    )
    presence.observe_fanout(fanout.record)
