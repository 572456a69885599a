"""The configuration database with real UCServers: AdminService config RPCs, two admins
racing, a change reaching the other server without a restart, the database going away
(running servers unaffected, writes UNAVAILABLE, a restart from the cache file, recovery),
and a corrupt cache file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from procall.api.admin.v1 import admin_pb2
from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.api.admin.v1 import admin_service_pb2_grpc as admin_grpc
from procall.config import PropertyKey, Scope
from procall.servers.runtime.app import ServerApp, StartupError
from procall.servers.ucserver.config import ConfigComponent
from procall.settings import Settings
from tests.helpers.postgres import PostgresCluster
from tests.helpers.topology import auth, error_info, mint_token, wait_for

StartApp = Callable[[str, Settings], Awaitable[ServerApp]]
GLOBAL = admin_pb2.CONFIG_SCOPE_GLOBAL


def _settings(make_settings: Callable[..., Settings], redis_url: str, server_id: str) -> Settings:
    settings = make_settings(redis_url)
    settings.server.server_id = server_id
    settings.server.config_reread_seconds = 0.3
    settings.database.connect_timeout = 1.0
    return settings


def _config(app: ServerApp) -> ConfigComponent:
    component = app.components["config"]
    assert isinstance(component, ConfigComponent)
    return component


async def _set(
    app: ServerApp, name: str, value: str, expected: int, *, admin: str = "admin-1"
) -> admin_pb2.ConfigProperty:
    async with grpc.aio.insecure_channel(app.address) as channel:
        reply = await admin_grpc.AdminServiceStub(channel).SetConfigProperty(
            admin_pb.SetConfigPropertyRequest(
                property=admin_pb2.ConfigProperty(name=name, value=value),
                expected_version=expected,
            ),
            metadata=auth(mint_token(app, user_id=admin, admin=True)),
            timeout=10,
        )
    return reply.property


async def _get(app: ServerApp, name: str, **fields: Any) -> admin_pb2.ConfigProperty:
    async with grpc.aio.insecure_channel(app.address) as channel:
        reply = await admin_grpc.AdminServiceStub(channel).GetConfigProperty(
            admin_pb.GetConfigPropertyRequest(name=name, **fields),
            metadata=auth(mint_token(app, admin=True)),
            timeout=10,
        )
    return reply.property


def _bad_field(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                request = error_details_pb2.BadRequest()
                if detail.Unpack(request):
                    return str(request.field_violations[0].field)
    raise AssertionError("no BadRequest")


async def test_admins_race_and_a_change_reaches_the_other_server_live(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    uc1 = await start_app("ucserver", _settings(make_settings, redis_url, "uc-1"))
    uc2 = await start_app("ucserver", _settings(make_settings, redis_url, "uc-2"))
    # never set: the default, version 0
    ring = await _get(uc2, "calls.ring_seconds")
    assert (ring.value, ring.version, ring.scope) == ("30.0", 0, GLOBAL)

    # two admins on two servers race on one version: exactly one wins
    results = await asyncio.gather(
        _set(uc1, "calls.ring_seconds", "12", 0, admin="admin-a"),
        _set(uc2, "calls.ring_seconds", "14", 0, admin="admin-b"),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, admin_pb2.ConfigProperty)]
    losses = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].code() == grpc.StatusCode.ABORTED
    assert error_info(losses[0]).reason == "STALE_VERSION"
    winner = wins[0]
    assert winner.version == 1 and winner.updated_by_user_id in ("admin-a", "admin-b")
    assert winner.update_time.seconds > 0

    # the change reaches both servers without a restart: their live values move
    async def ring_applied() -> bool:
        return all(
            _config(app).live.value("calls.ring_seconds") == float(winner.value)
            and app.components["calls"].calls.timings.ring_seconds == float(winner.value)  # type: ignore[attr-defined]
            for app in (uc1, uc2)
        )

    await wait_for(ring_applied, timeout=5)

    # chat's typing TTL and the rate limits, written on uc1, take effect on uc2
    await _set(uc1, "chat.typing_ttl_seconds", "2.5", 0)
    await _set(uc1, "limits.user_burst", "2", 0)
    await _set(uc1, "limits.user_rate", "0.1", 0)

    async def applied_on_uc2() -> bool:
        limits: Any = uc2.components["limits"]
        chat: Any = uc2.components["chat"]
        return (
            chat.messaging.limits.typing_ttl == 2.5
            and limits.config.user_rate == 0.1
            and limits.config.user_burst == 2
        )

    await wait_for(applied_on_uc2, timeout=5)
    # a user of uc2 is now held to 2 requests at once
    token = mint_token(uc2, user_id="u-limited")
    codes = []
    async with grpc.aio.insecure_channel(uc2.address) as channel:
        call = channel.unary_unary("/procall.api.journal.v1.JournalService/ListJournalEntries")
        for _ in range(4):
            try:
                await call(b"", metadata=auth(token), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc.StatusCode.RESOURCE_EXHAUSTED not in codes[:2]
    shown = await _get(uc2, "limits.user_rate")
    assert (shown.value, shown.version) == ("0.1", 1)

    # listing pages through the global properties; a local one names its server
    async with grpc.aio.insecure_channel(uc2.address) as channel:
        stub = admin_grpc.AdminServiceStub(channel)
        admin = auth(mint_token(uc2, admin=True))
        names: list[str] = []
        token_ = ""
        while True:
            page = await stub.ListConfigProperties(
                admin_pb.ListConfigPropertiesRequest(scope=GLOBAL, page_size=4, page_token=token_),
                metadata=admin,
            )
            names += [p.name for p in page.properties]
            token_ = page.next_page_token
            if not token_:
                break
        assert "calls.ring_seconds" in names and names == sorted(names)
        local = await stub.ListConfigProperties(
            admin_pb.ListConfigPropertiesRequest(scope=admin_pb2.CONFIG_SCOPE_LOCAL),
            metadata=admin,
        )
        assert {p.server_id for p in local.properties} == {"uc-2"}

        # bad input names the field; a user who is not an admin is refused
        for name, value, field in (
            ("limits.nope", "1", "property.name"),
            ("calls.ring_seconds", "soon", "property.value"),
            ("calls.ring_seconds", "100000", "property.value"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.SetConfigProperty(
                    admin_pb.SetConfigPropertyRequest(
                        property=admin_pb2.ConfigProperty(name=name, value=value),
                        expected_version=1,
                    ),
                    metadata=admin,
                )
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert _bad_field(bad.value) == field
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.GetConfigProperty(
                admin_pb.GetConfigPropertyRequest(name="calls.ring_seconds"),
                metadata=auth(mint_token(uc2, user_id="u-plain")),
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # admin writes are audited with the property and the value
        async def audited() -> list[admin_pb2.AuditEvent]:
            reply = await stub.ListAuditEvents(
                admin_pb.ListAuditEventsRequest(action="admin.SetConfigProperty"),
                metadata=admin,
            )
            return list(reply.events)

        await wait_for(lambda: _len_at_least(audited(), 7), timeout=5)
        events = await audited()
        details = [json.loads(e.details) for e in events]
        assert {"property": "limits.user_rate", "value": "0.1"}.items() <= next(
            d for d in details if d.get("property") == "limits.user_rate"
        ).items()
        assert {e.actor_user_id for e in events} >= {"admin-a", "admin-b", "admin-1"}


async def _len_at_least(items: Awaitable[list[Any]], count: int) -> bool:
    return len(await items) >= count


async def test_a_missed_announcement_is_caught_up_by_the_periodic_re_read(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    uc1 = await start_app("ucserver", _settings(make_settings, redis_url, "uc-1"))
    # written to the database with no announcement at all (as if Redis had been down)
    store: Any = _config(uc1).stores.config
    await store.compare_and_set(
        PropertyKey(Scope.GLOBAL, "", "calls.ring_seconds"),
        "8.0",
        expected_version=0,
        updated_by="elsewhere",
        update_time=1.0,
        fencing=None,
    )
    await wait_for(lambda: _async(_config(uc1).live.value("calls.ring_seconds") == 8.0), timeout=5)
    assert [v.value for v in _config(uc1).cache.read()] == ["8.0"]


@pytest.mark.postgres
async def test_config_database_outage_cache_restart_and_recovery(
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    tmp_path: Path,
    postgres_available: None,
) -> None:
    cluster = PostgresCluster().start()
    try:
        config_url = cluster.create_database("config_outage")

        def settings(server_id: str) -> Settings:
            made = _settings(make_settings, redis_url, server_id)
            made.database.config_url = config_url
            return made

        uc1 = await start_app("ucserver", settings("uc-1"))
        uc2 = await start_app("ucserver", settings("uc-2"))
        await _set(uc1, "calls.ring_seconds", "11", 0)
        await _set(uc1, "server.capacity", "321", 0)  # uc-1's own (LOCAL)
        await _set(uc2, "server.capacity", "654", 0)
        await wait_for(
            lambda: _async(_config(uc2).live.value("calls.ring_seconds") == 11.0), timeout=5
        )
        cache2 = _config(uc2).cache.path
        assert cache2.parent == tmp_path and cache2.exists()

        cluster.stop("immediate")
        # running servers carry on with what they have
        await asyncio.sleep(0.8)  # a few failed re-reads
        for app in (uc1, uc2):
            assert _config(app).live.value("calls.ring_seconds") == 11.0
            assert not _config(app).from_cache
        async with grpc.aio.insecure_channel(uc1.address) as channel:
            sessions = await admin_grpc.AdminServiceStub(channel).ListSessions(
                admin_pb.ListSessionsRequest(), metadata=auth(mint_token(uc1, admin=True))
            )
        assert sessions is not None
        # reads of a server's own values answer from what it runs with
        shown = await _get(uc1, "calls.ring_seconds")
        assert (shown.value, shown.version) == ("11.0", 1)
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await _get(uc1, "server.capacity", server_id="uc-2")
        assert elsewhere.value.code() == grpc.StatusCode.UNAVAILABLE
        # writes are refused, not accepted and lost
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _set(uc1, "calls.ring_seconds", "13", 1)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "configuration database" in (refused.value.details() or "")

        # uc-2 restarts: it runs from its cache file and says so
        await uc2.stop(0)
        uc2 = await start_app("ucserver", settings("uc-2"))
        config2 = _config(uc2)
        assert config2.from_cache and config2.degraded
        assert "cache file" in config2.health_detail
        assert config2.live.value("calls.ring_seconds") == 11.0
        assert config2.live.value("server.capacity") == 654
        assert uc2.components["calls"].calls.timings.ring_seconds == 11.0  # type: ignore[attr-defined]

        # a server with neither the database nor a cache file does not start
        with pytest.raises(StartupError) as no_start:
            await start_app("ucserver", settings("uc-3"))
        assert "no usable cache file" in str(no_start.value)
        assert "\n" not in str(no_start.value)

        # the database returns: uc-2 confirms its values, writes work and reach every server
        cluster.start()
        await wait_for(lambda: _async(not config2.from_cache), timeout=10)
        written = await _set(uc1, "calls.ring_seconds", "13", 1)
        assert written.version == 2

        async def everywhere() -> bool:
            return all(_config(a).live.value("calls.ring_seconds") == 13.0 for a in (uc1, uc2))

        await wait_for(everywhere, timeout=5)
    finally:
        cluster.close()


async def test_a_corrupt_cache_file_is_refused_and_replaced(
    redis_url: str, make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    settings = _settings(make_settings, redis_url, "uc-1")
    uc1 = await start_app("ucserver", settings)
    await _set(uc1, "calls.ring_seconds", "17", 0)
    cache = _config(uc1).cache
    await wait_for(lambda: _async('"17.0"' in cache.path.read_text()), timeout=5)
    await uc1.stop(0)
    cache.path.write_text(cache.path.read_text().replace('"17.0"', '"99.0"'))

    uc1 = await start_app("ucserver", _settings(make_settings, redis_url, "uc-1"))
    # refused (logged), fetched again from the database and written anew
    assert _config(uc1).live.value("calls.ring_seconds") == 17.0
    assert [v.value for v in cache.read()] == ["17.0"]

    # with the database gone, a corrupt cache file is not used
    await uc1.stop(0)
    cache.path.write_text("{not json")
    broken = _settings(make_settings, redis_url, "uc-1")
    broken.database.config_url = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    with pytest.raises(StartupError):
        await start_app("ucserver", broken)


async def _async(value: bool) -> bool:
    return value
