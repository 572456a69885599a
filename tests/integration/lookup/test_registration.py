"""The registrar in real servers: register on start, report load, deregister on stop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procall.launch.redis import free_port
from procall.mesh.lookup.v1 import lookup_pb2
from procall.mesh.lookup.v1 import lookup_service_pb2 as lookup_pb
from procall.routing import LoadGauge, ServerRole
from procall.servers.runtime.app import ServerApp
from procall.servers.upstream.registration import LookupRegistration
from tests.integration.lookup.conftest import Stub, eventually


async def servers(stub: Stub) -> dict[str, lookup_pb2.ServerInfo]:
    reply = await stub.ListServers(lookup_pb.ListServersRequest(), timeout=5)
    return {s.server_id: s for s in reply.servers}


async def test_ucserver_registers_on_start_and_deregisters_on_stop(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    lookup_app = await start_app("lookup", lookup_settings())
    stub = channels(lookup_app.address)
    settings = lookup_settings()
    settings.lookup.address = lookup_app.address
    settings.server.capacity = 123
    uc = await start_app("ucserver", settings)

    await eventually(lambda: _listed(stub, uc.server_id))
    info = (await servers(stub))[uc.server_id]
    assert (info.role, info.address, info.capacity, info.load) == (
        lookup_pb2.ROLE_UCSERVER, uc.address, 123, 0,
    )  # fmt: skip
    assert info.epoch > 0 and info.version

    await uc.stop(0)
    assert uc.server_id not in await servers(stub)  # at once, not after the TTL


async def test_a_server_alone_starts_without_registering(
    lookup_settings: Callable[..., Any], start_app: Callable[..., Any]
) -> None:
    app: ServerApp = await start_app("media", lookup_settings())  # no lookup.address
    assert app.address


async def _listed(stub: Stub, server_id: str) -> bool:
    return server_id in await servers(stub)


async def test_registration_waits_for_a_lookup_that_starts_later_and_reports_load(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    port = free_port()
    settings = lookup_settings()
    settings.lookup.address = f"127.0.0.1:{port}"
    settings.server.server_id = "media-early"
    gauge = LoadGauge()
    registration = LookupRegistration(settings, ServerRole.MEDIA, 10, gauge)
    app = ServerApp(
        "media", settings, [], on_start=[registration.on_start], on_stop=[registration.on_stop]
    )
    await app.start()  # the Lookup is not there yet: the server starts anyway
    try:
        assert registration.registrar is not None
        assert not await registration.registrar.wait_registered(0.5)

        lookup_config = lookup_settings()
        lookup_config.server.port = port
        stub = channels((await start_app("lookup", lookup_config)).address)
        took = await eventually(lambda: _listed(stub, "media-early"))
        assert took < 2.0

        gauge.set(7)
        await eventually(lambda: _load_is(stub, "media-early", 7))
    finally:
        await app.stop(0)
    assert "media-early" not in await servers(stub)


async def _load_is(stub: Stub, server_id: str, load: int) -> bool:
    info = (await servers(stub)).get(server_id)
    return info is not None and info.load == load


async def test_a_second_process_with_the_same_id_fences_the_first(
    lookup_settings: Callable[..., Any],
    start_app: Callable[..., Any],
    channels: Callable[[str], Stub],
) -> None:
    lookup_app = await start_app("lookup", lookup_settings())
    stub = channels(lookup_app.address)
    registrars = []
    for _ in range(2):
        settings = lookup_settings()  # no lookup.address: the registration below is our own
        settings.server.server_id = "media-twin"
        app = await start_app("media", settings)
        settings.lookup.address = lookup_app.address
        registration = LookupRegistration(settings, ServerRole.MEDIA, 10, LoadGauge())
        await registration.on_start(app)
        registrar = registration.registrar
        assert registrar is not None
        registrars.append((registration, registrar))
        assert await registrar.wait_registered(5)
    try:
        (_, first), (_, second) = registrars
        assert second.epoch > first.epoch
        await eventually(lambda: _fenced(first))
        assert not first.running
        assert (await servers(stub))["media-twin"].epoch == second.epoch
    finally:
        for registration, _ in registrars:
            await registration.on_stop(lookup_app)
    assert "media-twin" not in await servers(stub)


async def _fenced(registrar: Any) -> bool:
    return bool(registrar.fenced)
