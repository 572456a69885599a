"""Each server serves its metrics for Prometheus: scraped over HTTP after real traffic
(logins, presence, a chat across two UCServers) on a real Redis, SQLite and gRPC."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from procall.api.chat.v1 import chat_pb2
from procall.api.chat.v1 import chat_service_pb2 as chat_pb
from procall.api.chat.v1 import chat_service_pb2_grpc as chat_grpc
from procall.api.presence.v1 import presence_pb2
from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_service_pb2 as session_pb
from procall.api.session.v1 import session_service_pb2_grpc as session_grpc
from procall.servers.runtime.app import ServerApp
from procall.settings import Settings
from tests.helpers.streams import EventStream
from tests.helpers.topology import StartApp, auth, fast_settings, login, start_system

HOMES = [("alice", "uc-1"), ("bob", "uc-2")]
#: (metric name, labels as sorted pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(app: ServerApp) -> Samples:
    """Every sample of the server's endpoint, read over HTTP as Prometheus does."""

    def get() -> str:
        with urllib.request.urlopen(f"http://{app.metrics.address}/metrics", timeout=5) as reply:
            assert reply.status == 200
            return str(reply.read().decode("utf-8"))

    text = await asyncio.to_thread(get)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` (KeyError when absent)."""
    return samples[(name, tuple(sorted(labels.items())))]


def rpcs(samples: Samples, method: str, code: str) -> float:
    """Calls of ``method`` answered with ``code``, as the RPC histogram counts them."""
    key = ("procall_rpc_server_duration_seconds_count",
           (("rpc_grpc_status_code", code), ("rpc_method", method)))  # fmt: skip
    return samples.get(key, 0.0)


async def test_a_ucserver_shows_its_clients_traffic_and_backends_after_real_use(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    system = await start_system(start_app, lambda: fast_settings(make_settings, redis_url), HOMES)
    uc1, uc2 = system.ucservers["uc-1"], system.ucservers["uc-2"]
    assert uc1.metrics.address.startswith("127.0.0.1:")  # loopback by default
    alice = await login(uc1.address, "alice")
    bob = await login(uc2.address, "bob")
    alice_stream = EventStream(uc1.address, alice.session_token)
    bob_stream = EventStream(uc2.address, bob.session_token)
    await alice_stream.open()
    await bob_stream.open()
    try:
        async with grpc.aio.insecure_channel(uc2.address) as channel:
            # bob watches alice (homed on the other server)
            await presence_grpc.PresenceServiceStub(channel).AddContacts(
                presence_pb.AddContactsRequest(user_ids=[system.users["alice"]]),
                metadata=auth(bob.session_token),
            )
        async with grpc.aio.insecure_channel(uc1.address) as channel:
            await presence_grpc.PresenceServiceStub(channel).SetPresence(
                presence_pb.SetPresenceRequest(availability=presence_pb2.AVAILABILITY_BUSY),
                metadata=auth(alice.session_token),
            )
            chat = chat_grpc.ChatServiceStub(channel)
            conversation = (
                await chat.CreateConversation(
                    chat_pb.CreateConversationRequest(
                        kind=chat_pb2.CONVERSATION_KIND_DIRECT,
                        member_user_ids=[system.users["bob"]],
                    ),
                    metadata=auth(alice.session_token),
                )
            ).conversation
            for i in range(3):
                await chat.SendMessage(
                    chat_pb.SendMessageRequest(
                        conversation_id=conversation.conversation_id,
                        text=f"hello {i}",
                        request_id=uuid.uuid4().hex,
                    ),
                    metadata=auth(alice.session_token),
                )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await session_grpc.SessionServiceStub(channel).Login(
                    session_pb.LoginRequest(username="alice", password="wrong password")
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await bob_stream.presence_of(system.users["alice"])
        for _ in range(3):
            await bob_stream.next_of("message_created")

        sent = await scrape(uc1)
        received = await scrape(uc2)
    finally:
        await alice_stream.close()
        await bob_stream.close()

    # clients: alice's session on uc-1 with its stream open
    assert value(sent, "procall_clients_connected") >= 1
    assert value(sent, "procall_sessions") >= 1
    # RPC latency by method and code: every call counted once, in its buckets
    login_method = "procall.api.session.v1.SessionService/Login"
    send_method = "procall.api.chat.v1.ChatService/SendMessage"
    assert rpcs(sent, login_method, "OK") >= 1
    assert rpcs(sent, login_method, "UNAUTHENTICATED") == 1
    assert rpcs(sent, send_method, "OK") == 3
    labels = {"rpc_method": send_method, "rpc_grpc_status_code": "OK"}
    assert value(sent, "procall_rpc_server_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert 0 < value(sent, "procall_rpc_server_duration_seconds_sum", **labels) < 30
    # events by kind: alice's own sessions got her presence; bob got it and the messages
    assert value(sent, "procall_events_delivered_total", kind="presence_changed") >= 1
    assert value(received, "procall_events_delivered_total", kind="message_created") >= 3
    assert value(received, "procall_events_delivered_total", kind="presence_changed") >= 1
    # presence fan-out: each change counted with its local deliveries
    assert value(sent, "procall_presence_fanout_count") >= 1
    assert value(sent, "procall_presence_fanout_sum") >= 1
    # the peer link to uc-2 carried the change and the messages and was acknowledged
    assert value(sent, "procall_peer_queue_depth", peer="uc-2") >= 0
    assert value(sent, "procall_peer_resent_total", peer="uc-2") == 0
    assert value(sent, "procall_peer_dropped_total", peer="uc-2") == 0
    assert value(sent, "procall_outbox_depth") == 0
    # every backend is reachable
    for dependency in ("redis", "chat database", "configuration database", "directory", "lookup"):
        assert value(sent, "procall_dependency_available", dependency=dependency) == 1
    # the event loop's lag is sampled
    assert value(sent, "procall_event_loop_lag_seconds_count") > 0
    # and the samples name their server
    target = [key for key in sent if key[0] == "target_info"]
    assert target and ("service_instance_id", "uc-1") in target[0][1]


async def test_a_media_server_shows_its_calls_and_legs(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    settings = make_settings()
    settings.media.host_addresses = ["127.0.0.1"]
    media = await start_app("media", settings)
    samples = await scrape(media)
    assert value(samples, "procall_media_calls") == 0
    assert value(samples, "procall_media_legs") == 0


async def test_metrics_turned_off_serve_nothing(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    settings = make_settings()
    settings.telemetry.metrics = False
    media = await start_app("media", settings)
    assert media.metrics.address == ""
    assert not media.metrics.enabled
