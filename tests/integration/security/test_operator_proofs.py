"""Operator tools in plain mode (blocking channels) prove themselves call by call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.mesh.lookup.v1 import lookup_service_pb2_grpc as lookup_grpc
from procall.servers.runtime.channels import proving_channel
from procall.servers.runtime.identity import ProofSigner, role_target
from procall.settings import Settings
from tests.helpers.topology import StartApp


def _beat(channel: grpc.Channel, times: int) -> list[int]:
    stub = lookup_grpc.LookupServiceStub(channel)
    info = lookup_pb2.ServerInfo(
        server_id="media-7", role=lookup_pb2.ROLE_MEDIA, address="127.0.0.1:7"
    )
    epochs = []
    for _ in range(times):
        reply = stub.Heartbeat(lookup_pb.HeartbeatRequest(server=info), timeout=5)
        info.epoch = reply.epoch
        epochs.append(reply.epoch)
    return epochs


async def test_a_blocking_channel_proves_each_call_afresh(
    start_app: StartApp, settings: Callable[[], Settings]
) -> None:
    lookup = await start_app("lookup", settings())
    credential = lookup.settings.auth.service_credential
    signer = ProofSigner(credential, "media", "media-7")
    with proving_channel(
        grpc.insecure_channel(lookup.address), signer, role_target("lookup")
    ) as ch:
        epochs = await asyncio.to_thread(_beat, ch, 3)  # three calls, three proofs
    assert epochs[0] > 0 and len(set(epochs)) == 1
    with grpc.insecure_channel(lookup.address) as plain:
        with pytest.raises(grpc.RpcError) as refused:
            await asyncio.to_thread(_beat, plain, 1)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
