"""Pins the public names of the routing package and the Lookup's server and storage modules."""

from __future__ import annotations

import importlib
import inspect

import pytest

SURFACE = {
    "procall.routing": {
        "MAX_EPOCH", "AllocationState", "Candidate", "ChangeKind", "HeartbeatAck",
        "HomeAssignment", "HomeDirectory", "HomeStore", "Listing", "LoadGauge", "LookupPort",
        "MediaAllocations", "Registrar", "ResolvedHome", "RoutingService", "ServerIdentity",
        "ServerInfo", "ServerObserved", "ServerRegistry", "ServerRole", "TopologyChange",
        "TopologyObservation", "TopologyView", "choose_two_random",
    },
    "procall.storage.redis.registry": {
        "RedisHomeStore", "RedisMediaAllocations", "RedisServerRegistry",
    },
    "procall.servers.lookup.root": {"build_lookup", "sweep_interval"},
    "procall.servers.lookup.servicer": {
        "LookupServicer",
    },
    "procall.servers.upstream.registration": {
        "GrpcLookupPort", "LookupRegistration", "lookup_channel",
    },
    "procall.servers.codecs.routing": {
        "CHANGE_KINDS", "role_from_proto", "role_to_proto", "server_from_proto", "server_to_proto",
    },
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        item = getattr(loaded, name)
        if inspect.isclass(item) or inspect.isfunction(item):
            assert item.__doc__, f"{module}.{name} has no docstring"


def test_routing_imports_no_transport_or_store() -> None:
    import pkgutil

    import procall.routing

    names = [m.name for m in pkgutil.iter_modules(procall.routing.__path__, "procall.routing.")]
    assert len(names) >= 6
    for name in ["procall.routing", *names]:
        source = inspect.getsource(importlib.import_module(name))
        for forbidden in ("grpc", "redis", "sqlalchemy", "procall.servers", "procall.storage"):
            assert f"import {forbidden}" not in source, f"{name} imports {forbidden}"
            assert f"from {forbidden}" not in source, f"{name} imports {forbidden}"
