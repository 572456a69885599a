"""Fixtures of the security tests: real servers over a real Redis, with TLS or plain proofs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from procall.settings import Settings
from tests.helpers.topology import StartApp, System, fast_settings, start_system

HOMES = [("alice", "uc-1"), ("bob", "uc-2")]


@pytest.fixture
def settings(redis_url: str, make_settings: Callable[..., Settings]) -> Callable[[], Settings]:
    """Quick settings on the test Redis, with the plain-mode credential set."""
    return lambda: fast_settings(make_settings, redis_url)


@pytest.fixture
async def plain_system(start_app: StartApp, settings: Callable[[], Settings]) -> System:
    """Directory, Lookup and UCServers uc-1 and uc-2 in plain mode (per-call proofs)."""
    return await start_system(start_app, settings, HOMES)


@pytest.fixture
async def tls_system(
    start_app: StartApp, settings: Callable[[], Settings], tmp_path: Path
) -> System:
    """The same system with mutual TLS between the servers and TLS for clients."""
    return await start_system(start_app, settings, HOMES, tls_dir=tmp_path / "tls")
