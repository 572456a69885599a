"""Traces of procall processes: one call at start-up, and the per-event context.

``setup_tracing`` installs an OpenTelemetry tracer provider built from
``[telemetry]`` and instruments the grpc aio servers and channels (the maintained
``opentelemetry-instrumentation-grpc``), the Redis client and the SQLAlchemy engines
created after it. It must run before any server, channel or engine is created: the
instrumentation replaces their constructors, and objects made earlier stay
untraced. With ``exporter = "none"`` (the default) it does nothing at all, and the
per-event helpers below return after reading one module-level flag.

Long-lived streams (the peer streams, every client's ``Connect``) are one span each
for their whole life, so the context of a user action travels with each event
instead: ``stamp`` writes the current (sampled) span context into an event's
``trace_context`` map, and the receiving side opens a span whose parent is that
context (``event_span``), linked to the stream it came on. Events of an unsampled
trace carry no context, so the servers they reach do not trace them either.

Sampling is parent-based: a trace is started with probability ``sampling_ratio``
where a user action enters the system, and every server it reaches follows that
decision. Housekeeping (health checks, Lookup heartbeats, Redis and SQL work outside
any traced call) never starts a trace, so that a console shows what users did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind

from procall.settings import ConfigError, TelemetrySettings

__all__ = [
    "EXPORTERS",
    "SERVER_ATTRIBUTE",
    "check_settings",
    "context_of",
    "event_span",
    "one_line",
    "setup_tracing",
    "shutdown_tracing",
    "stamp",
    "start_event_span",
    "step_span",
    "tracer",
    "tracing_enabled",
]

_log = logging.getLogger(__name__)

#: The values ``[telemetry] exporter`` accepts.
EXPORTERS = ("none", "console", "otlp")
#: Attribute naming the procall server a span was recorded on (several servers may share
#: one process in tests and ``procall bench``).
SERVER_ATTRIBUTE = "procall.server_id"


#: Calls made every few seconds by every server to keep the system together: never the
#: start of a trace (they would drown the actions of users).
_HOUSEKEEPING = (
    "/grpc.health.v1.Health/",
    "/procall.mesh.lookup.v1.LookupService/Heartbeat",
)


class _RootSampler(Sampler):
    """Decides whether a new trace is recorded: ``ratio`` of them, but never one that
    begins with a housekeeping call or with a Redis command or SQL statement outside
    any traced action (heartbeats, upkeep, schema checks)."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        """Drop housekeeping and orphan storage roots; sample the rest by ratio."""
        # gRPC spans are named "/package.Service/Method"; the storage clients' are not
        if name.startswith(_HOUSEKEEPING) or (kind == SpanKind.CLIENT and name[:1] != "/"):
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """The sampler's name in OpenTelemetry's diagnostics."""
        return f"ProcallRoot{{{self._ratio.get_description()}}}"


class _State:
    """What ``setup_tracing`` installed (one per process)."""

    enabled = False
    provider: TracerProvider | None = None
    tracer: trace.Tracer = trace.NoOpTracer()
    instrumentors: list[Any] = []


def tracing_enabled() -> bool:
    """Whether traces are being recorded in this process."""
    return _State.enabled


def tracer() -> trace.Tracer:
    """procall's own tracer (a no-op one while tracing is off)."""
    return _State.tracer


def one_line(span: ReadableSpan) -> str:
    """A span as one line of the console: where, what, its trace, its parent, how long.

    ``grep <trace id>`` over the output of every server gives one trace.
    """
    context = span.context
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else "-" * 16
    service = span.resource.attributes.get("service.name", "?")
    server = (span.attributes or {}).get(SERVER_ATTRIBUTE) or span.resource.attributes.get(
        "service.instance.id"
    )
    where = f"{service} {server}" if server else str(service)
    took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    kind = span.kind.name if span.kind is not None else "?"
    status = "" if span.status.is_ok else f" {span.status.status_code.name}"
    ids = (
        f"trace={context.trace_id:032x} span={context.span_id:016x} parent={parent}"
        if context is not None
        else ""
    )
    return f"[{where}] {span.name} {kind} {ids} {took:.2f}ms{status}\n"


def _exporter(settings: TelemetrySettings) -> SpanExporter:
    if settings.exporter == "console":
        return ConsoleSpanExporter(formatter=one_line)
    # imported here: the OTLP exporter pulls in its own protobuf modules
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if settings.otlp_endpoint:
        return OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)
    return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4317


def check_settings(settings: TelemetrySettings) -> None:
    """Raise ``ConfigError`` for an exporter or sampling ratio procall cannot use."""
    if settings.exporter not in EXPORTERS:
        raise ConfigError(
            f"[telemetry] exporter must be one of {', '.join(EXPORTERS)}, not {settings.exporter!r}"
        )
    if not 0.0 <= settings.sampling_ratio <= 1.0:
        raise ConfigError(
            f"[telemetry] sampling_ratio must be between 0 and 1, not {settings.sampling_ratio}"
        )


def setup_tracing(
    settings: TelemetrySettings,
    service_name: str,
    *,
    instance_id: str = "",
    exporter: SpanExporter | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Start tracing as ``settings`` say; call once, before any server, channel or engine.

    ``service_name`` (``procall-ucserver``) and ``instance_id`` (the server id, when
    known) name the process in every span. ``exporter`` replaces the configured one
    (tests pass an ``InMemorySpanExporter``, whose spans are then exported one by one
    as they end). Returns the provider, or None when the exporter is ``none`` and
    nothing was installed. ``set_global`` also makes it OpenTelemetry's global provider
    (the first call of a process only).
    """
    check_settings(settings)
    if exporter is None and settings.exporter == "none":
        return None
    if _State.enabled:
        shutdown_tracing()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service_name, "service.instance.id": instance_id}
            if instance_id
            else {"service.name": service_name}
        ),
        sampler=ParentBased(_RootSampler(settings.sampling_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    if set_global:
        trace.set_tracer_provider(provider)
    _instrument(provider)
    _State.provider = provider
    _State.tracer = provider.get_tracer("procall")
    _State.enabled = True
    return provider


def _instrument(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (
        GrpcAioInstrumentorServer(),  # type: ignore[no-untyped-call]
        GrpcAioInstrumentorClient(),  # type: ignore[no-untyped-call]
        RedisInstrumentor(),
        SQLAlchemyInstrumentor(),
    ):
        # the SQLAlchemy instrumentation declares support up to 2.0 only; its engine
        # events are the same in the 2.1 procall uses
        instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
        _State.instrumentors.append(instrumentor)


def shutdown_tracing() -> None:
    """Export what is pending and stop tracing (servers and channels created from now on
    are not traced)."""
    if not _State.enabled:
        return
    _State.enabled = False
    for instrumentor in reversed(_State.instrumentors):
        instrumentor.uninstrument()
    _State.instrumentors = []
    if _State.provider is not None:
        _State.provider.shutdown()
    _State.provider = None
    _State.tracer = trace.NoOpTracer()


def stamp(carrier: MutableMapping[str, str]) -> None:
    """Write the current span's context into ``carrier`` (an event's ``trace_context``)
    when tracing is on and the current trace is sampled; otherwise leave it alone."""
    if not _State.enabled:
        return
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        return
    propagate.inject(carrier)


def start_event_span(
    name: str,
    carrier: MutableMapping[str, str],
    kind: SpanKind,
    server_id: str,
    *,
    link: bool = True,
    attributes: dict[str, str | int] | None = None,
) -> Span | None:
    """Start (not as the current span) a span for one event that came with ``carrier``.

    Its parent is the context in the carrier; with ``link`` it links to the span that
    is current (the stream the event came on or goes out by). None, and nothing
    recorded, when tracing is off or the carrier is empty (the event's trace was not
    sampled). The caller ends the span.
    """
    if not _State.enabled or not carrier:
        return None
    links = None
    if link:
        stream = trace.get_current_span().get_span_context()
        links = [Link(stream)] if stream.is_valid else None
    return _State.tracer.start_span(
        name,
        context=propagate.extract(carrier),
        kind=kind,
        links=links,
        attributes={SERVER_ATTRIBUTE: server_id, **(attributes or {})},
    )


@contextmanager
def step_span(name: str, server_id: str, **attributes: str | int) -> Iterator[Span | None]:
    """A child span of the current one for one step of its work, as the current span for
    the ``with`` block; None, recording nothing, when tracing is off or the current trace
    is not sampled (a step never starts a trace of its own)."""
    if not _State.enabled or not trace.get_current_span().get_span_context().trace_flags.sampled:
        yield None
        return
    with _State.tracer.start_as_current_span(
        name, attributes={SERVER_ATTRIBUTE: server_id, **attributes}
    ) as span:
        yield span


def context_of(span: Span) -> dict[str, str]:
    """A new carrier holding ``span``'s context (for an envelope that goes on from here)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


@contextmanager
def event_span(
    name: str,
    carrier: MutableMapping[str, str],
    kind: SpanKind,
    server_id: str,
    restamp: MutableMapping[str, str] | None = None,
) -> Iterator[Span | None]:
    """``start_event_span`` as the current span for the ``with`` block.

    ``restamp`` (an event's ``trace_context``) gets the new span's context instead of
    what it held, so that whoever the event goes to next continues from here. Yields
    None, recording nothing, when tracing is off or the carrier is empty.
    """
    span = start_event_span(name, carrier, kind, server_id)
    if span is None:
        yield None
        return
    with trace.use_span(span, end_on_exit=True):
        if restamp is not None:
            restamp.clear()
            propagate.inject(restamp)
        yield span
