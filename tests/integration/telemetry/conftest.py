"""Traces of an in-process system: Directory, Lookup, two UCServers and two MediaServers,
with an in-memory span exporter installed before any of them is built."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from procall.settings import Settings, TelemetrySettings
from procall.telemetry.tracing import setup_tracing, shutdown_tracing
from tests.helpers.topology import StartApp, System, fast_settings, start_system
from tests.integration.calls.conftest import media_servers, phones

__all__ = ["media_servers", "phones"]

HOMES = [("alice", "uc-1"), ("bob", "uc-2"), ("carol", "uc-1"), ("dave", "uc-2")]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the test's servers and clients record (tracing on, sampling 1.0)."""
    exporter = InMemorySpanExporter()
    setup_tracing(
        TelemetrySettings(exporter="console"), "procall-tests", exporter=exporter, set_global=False
    )
    yield exporter
    shutdown_tracing()


@pytest.fixture
async def system(
    spans: InMemorySpanExporter,
    redis_url: str,
    make_settings: Callable[..., Settings],
    start_app: StartApp,
) -> AsyncIterator[System]:
    yield await start_system(start_app, lambda: fast_settings(make_settings, redis_url), HOMES)
