"""The procall Python client SDK.

``ProcallClient.login(address, username, password)`` logs in through any
UCServer, goes to the user's home server and keeps the session's ``Connect``
stream open: reconnecting with backoff, resuming without loss or duplicates,
following redirects, refreshing the session token. ``client.events()`` yields
typed events (``PresenceChanged``, ``MessageCreated``, ``CallChanged``,
``Redirected``, ``Resynced``, ``SessionClosed``, ...); presence and contact
calls are methods. Failures raise ``ProcallClientError`` (``code``, ``reason``,
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
from procall.client._models import (
    Availability,
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
    "Availability",
    "Backoff",
    "CallChanged",
    "ChannelFactory",
    "ClientEvent",
    "ClientOptions",
    "Connected",
    "ConversationChanged",
    "Disconnected",
    "JournalEntryAdded",
    "MessageCreated",
    "Presence",
    "PresenceChanged",
    "ProcallClient",
    "ProcallClientError",
    "ReadReceipt",
    "Redirected",
    "Resynced",
    "ServerEndpoint",
    "SessionClosed",
    "SessionInfo",
    "TelephonyState",
    "TypingChanged",
    "UnknownEvent",
    "event_from_proto",
    "insecure_channel",
    "tls_channels",
]
