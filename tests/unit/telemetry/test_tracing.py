"""procall.telemetry.tracing: settings checks, nothing installed by default, which traces
start, and the per-event carriers (stamp, event_span)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from procall.settings import ConfigError, TelemetrySettings
from procall.telemetry import tracing
from procall.telemetry.tracing import (
    SERVER_ATTRIBUTE,
    check_settings,
    event_span,
    one_line,
    setup_tracing,
    shutdown_tracing,
    stamp,
    tracer,
    tracing_enabled,
)


def test_public_names_are_pinned() -> None:
    assert set(tracing.__all__) == {
        "EXPORTERS", "SERVER_ATTRIBUTE", "check_settings", "context_of", "event_span",
        "one_line", "setup_tracing", "shutdown_tracing", "stamp", "start_event_span", "step_span",
        "tracer", "tracing_enabled",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (TelemetrySettings(exporter="jaeger"), "exporter must be one of none, console, otlp"),
        (TelemetrySettings(exporter="console", sampling_ratio=1.5), "between 0 and 1"),
        (TelemetrySettings(exporter="console", sampling_ratio=-0.1), "between 0 and 1"),
    ],
)
def test_settings_procall_cannot_use_are_refused(settings: TelemetrySettings, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        check_settings(settings)


def test_the_default_installs_nothing_and_stamps_nothing() -> None:
    assert setup_tracing(TelemetrySettings(), "procall-test") is None
    assert not tracing_enabled()
    carrier: dict[str, str] = {}
    stamp(carrier)
    with event_span("peer receive", {"traceparent": "x"}, SpanKind.CONSUMER, "uc-1") as span:
        assert span is None
    assert carrier == {}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    setup_tracing(
        TelemetrySettings(exporter="console"), "procall-test", exporter=exporter, set_global=False
    )
    yield exporter
    shutdown_tracing()
    assert not tracing_enabled()


def test_an_event_carries_its_trace_to_the_next_server(spans: InMemorySpanExporter) -> None:
    event_context: dict[str, str] = {}
    stamp(event_context)  # outside any span: nothing to carry
    assert event_context == {}
    with tracer().start_as_current_span("/pkg.Service/Send", kind=SpanKind.SERVER) as root:
        stamp(event_context)
    assert f"{root.get_span_context().trace_id:032x}" in event_context["traceparent"]
    with tracer().start_as_current_span("stream") as stream:
        with event_span(
            "peer receive", event_context, SpanKind.CONSUMER, "uc-2", restamp=event_context
        ) as received:
            assert received is not None
    (finished,) = [s for s in spans.get_finished_spans() if s.name == "peer receive"]
    assert finished.context is not None and finished.parent is not None
    assert finished.context.trace_id == root.get_span_context().trace_id
    assert finished.parent.span_id == root.get_span_context().span_id
    assert finished.links[0].context.span_id == stream.get_span_context().span_id
    assert finished.attributes is not None and finished.attributes[SERVER_ATTRIBUTE] == "uc-2"
    # the event goes on with the receiving span's context
    assert f"{finished.context.span_id:016x}" in event_context["traceparent"]
    line = one_line(finished)
    assert line.startswith("[procall-test uc-2] peer receive CONSUMER trace=")
    assert line.endswith("ms\n")


def test_housekeeping_and_orphan_storage_work_start_no_trace(
    spans: InMemorySpanExporter,
) -> None:
    for name, kind in [
        ("/grpc.health.v1.Health/Check", SpanKind.CLIENT),
        ("/procall.mesh.lookup.v1.LookupService/Heartbeat", SpanKind.SERVER),
        ("EVALSHA", SpanKind.CLIENT),
        ("SELECT procall.db", SpanKind.CLIENT),
    ]:
        with tracer().start_as_current_span(name, kind=kind) as span:
            assert not span.get_span_context().trace_flags.sampled
    with tracer().start_as_current_span("/pkg.Service/Send", kind=SpanKind.SERVER):
        # inside a traced call, Redis commands are part of it
        with tracer().start_as_current_span("EVALSHA", kind=SpanKind.CLIENT) as redis:
            assert redis.get_span_context().trace_flags.sampled
    assert [s.name for s in spans.get_finished_spans()] == ["EVALSHA", "/pkg.Service/Send"]
    assert trace.get_current_span() is trace.INVALID_SPAN
