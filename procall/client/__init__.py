"""The procall Python client SDK.

``ProcallClient.login(address, username, password)`` logs in through any
UCServer, goes to the user's home server and keeps the session's ``Connect``
stream open: reconnecting with backoff, resuming without loss or duplicates,
following redirects, refreshing the session token. ``client.events()`` yields
typed events (``PresenceChanged``, ``MessageCreated``, ``CallChanged``,
``Redirected``, ``Resynced``, ``SessionClosed``, ...); presence and contact
calls are methods, and so are the calls API (``place_call``, ``answer_call``,
``hang_up``, ``negotiate_media``, ..., returning ``Call``). ``Softphone`` carries one
call's audio on an aiortc peer connection (``ToneSource`` / ``WavSource`` in, a
``Recording`` out) and re-negotiates by itself when the call moves to another
MediaServer. Failures raise ``ProcallClientError`` (``code``, ``reason``,
``message``). The ``procall client`` command line lives in ``procall.client.cli``.
"""

from procall.client._client import DEFAULT_CLIENT_NAME, ProcallClient
from procall.client._errors import ProcallClientError
from procall.client._events import (
    CallChanged,
    ClientEvent,
    Connected,
    ConversationChanged,
    Disconnected,
    JournalEntryAdded,
    MessageCreated,
    PresenceChanged,
    ReadReceipt,
    Redirected,
    Resynced,
    SessionClosed,
    TypingChanged,
    UnknownEvent,
    event_from_proto,
)
from procall.client._media.audio import AudioSource, Recording, ToneSource, WavSource
from procall.client._media.softphone import MediaNegotiator, Softphone
from procall.client._models import (
    Availability,
    Call,
    ForwardingRule,
    Presence,
    ServerEndpoint,
    SessionInfo,
    TelephonyState,
)
from procall.client._options import (
    Backoff,
    ChannelFactory,
    ClientOptions,
    insecure_channel,
    tls_channels,
)

__all__ = [
    "DEFAULT_CLIENT_NAME",
    "AudioSource",
    "Availability",
    "Backoff",
    "Call",
    "CallChanged",
    "ChannelFactory",
    "ClientEvent",
    "ClientOptions",
    "Connected",
    "ConversationChanged",
    "Disconnected",
    "ForwardingRule",
    "JournalEntryAdded",
    "MediaNegotiator",
    "MessageCreated",
    "Presence",
    "PresenceChanged",
    "ProcallClient",
    "ProcallClientError",
    "ReadReceipt",
    "Recording",
    "Redirected",
    "Resynced",
    "ServerEndpoint",
    "SessionClosed",
    "SessionInfo",
    "Softphone",
    "TelephonyState",
    "ToneSource",
    "TypingChanged",
    "UnknownEvent",
    "WavSource",
    "event_from_proto",
    "insecure_channel",
    "tls_channels",
]
