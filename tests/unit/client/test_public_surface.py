"""Pins the public names of the client SDK, so that changes to them are deliberate."""

from __future__ import annotations

import importlib
import inspect

import pytest

SURFACE = {
    "procall.client": {
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
    },
    "procall.client.cli": {
        "CLIENT_NAME",
        "ClientCliError",
        "add_client_parser",
        "run_client",
        "run_client_command",
        "server_ca_file",
    },
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        item = getattr(loaded, name)
        if inspect.isclass(item) or inspect.isfunction(item):
            assert item.__doc__, f"{module}.{name} has no docstring"


def test_public_methods_of_the_client_are_documented() -> None:
    from procall.client import ProcallClient

    for name, member in vars(ProcallClient).items():
        if name.startswith("_"):
            continue
        target = (
            member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        )
        assert getattr(target, "__doc__", None), f"ProcallClient.{name} has no docstring"
