"""Metrics of a server process: OpenTelemetry instruments, a Prometheus endpoint, OTLP.

Each server process has one ``ProcessMetrics``: its own ``MeterProvider`` (no global
one, so that several servers in one process, as in the tests, keep their figures
apart), read by a ``PrometheusMetricReader`` into a registry of its own that a small
HTTP server serves at ``http://<[telemetry] metrics_address>/metrics`` (loopback and a
free port by default; the address goes into the ready file and ``endpoints.json``),
and, with ``[telemetry] exporter = "otlp"``, pushed every
``metrics_export_seconds`` to ``otlp_endpoint`` as well.

Most figures are observed at scrape time from state the servers keep anyway
(``observe``): nothing is done per event for them. Only what has no state to read is
recorded as it happens (RPC latency, presence fan-out, loop lag), on histograms with
explicit boundaries (OTel's default ones suit milliseconds, not seconds).

``[telemetry] metrics = false`` gives a ``ProcessMetrics`` whose instruments do
nothing and that serves no endpoint (``enabled`` is False).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    NoOpMeterProvider,
    Observation,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from procall.settings import TelemetrySettings

__all__ = [
    "FANOUT_BUCKETS",
    "LAG_BUCKETS",
    "SECONDS_BUCKETS",
    "Attributes",
    "ProcessMetrics",
    "Reading",
]

_log = logging.getLogger(__name__)

#: Histogram boundaries (seconds) of RPC durations: 0.5 ms to 10 s.
SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Histogram boundaries (seconds) of the event loop's lag: 1 ms to 2.5 s.
LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: Histogram boundaries of counts per change (presence deliveries per change).
FANOUT_BUCKETS: tuple[float, ...] = (
    0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
)  # fmt: skip

#: Attributes (labels) of one observed value.
Attributes = Mapping[str, str]
#: What an observe callback returns: one value, or values by attributes.
Reading = float | int | Iterable[tuple[Attributes, float | int]]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"[telemetry] metrics_address must be host:port, not {address!r}")
    return host.strip("[]"), int(port)


class ProcessMetrics:
    """The metrics of one server process (see the module doc)."""

    def __init__(
        self,
        role: str,
        server_id: str,
        settings: TelemetrySettings | None = None,
    ) -> None:
        settings = settings or TelemetrySettings()
        self.role = role
        self.server_id = server_id
        #: Whether metrics are collected at all (``[telemetry] metrics``).
        self.enabled = settings.metrics
        self._settings = settings
        self._provider: MeterProvider | None = None
        self._http: Any = None
        self._thread: Any = None
        self._host = ""
        self._port = 0
        self._registry: Any = None
        if not self.enabled:
            self.meter: Meter = NoOpMeterProvider().get_meter("procall")
            return
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        self._host, self._port = _split(settings.metrics_address)
        self._registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [
            PrometheusMetricReader(scope_info_enabled=False, registry=self._registry)
        ]
        if settings.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )

            exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint or None)
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=settings.metrics_export_seconds * 1000
                )
            )
        resource = Resource.create(
            {"service.name": f"procall-{role}", "service.instance.id": server_id}
        )
        # shut down by ServerApp.stop (an atexit hook per provider would keep every test's)
        self._provider = MeterProvider(
            metric_readers=readers, resource=resource, shutdown_on_exit=False
        )
        self.meter = self._provider.get_meter("procall")

    @property
    def address(self) -> str:
        """``host:port`` of the scrape endpoint once serving (empty when off)."""
        if self._http is None:
            return ""
        host = self._host if self._host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{host}:{self._port}"

    def serve(self) -> None:
        """Start the scrape endpoint (once; nothing when metrics are off)."""
        if not self.enabled or self._http is not None:
            return
        from prometheus_client import start_http_server

        self._http, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._registry
        )
        self._port = int(self._http.server_address[1])
        _log.info("metrics of %s at http://%s/metrics", self.server_id, self.address)

    def shutdown(self) -> None:
        """Stop the endpoint and the exporters (a last OTLP export is attempted)."""
        if self._http is not None:
            # shutdown() waits for the serving thread's next poll (up to 0.5 s): not on the loop
            http, self._http = self._http, None

            def close() -> None:
                http.shutdown()
                http.server_close()

            threading.Thread(target=close, name="metrics-endpoint-close", daemon=True).start()
        if self._provider is not None:
            self._provider.shutdown(timeout_millis=2_000)
            self._provider = None

    def histogram(
        self, name: str, description: str, unit: str, boundaries: Sequence[float]
    ) -> Histogram:
        """A histogram with explicit bucket ``boundaries``."""
        return self.meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(boundaries),
        )

    def observe(
        self,
        name: str,
        description: str,
        read: Callable[[], Reading],
        *,
        kind: Literal["gauge", "counter"] = "gauge",
        unit: str = "",
    ) -> None:
        """Report what ``read`` returns at each collection: a gauge, or a counter of a
        running total (``kind="counter"``). ``read`` runs on the collecting thread: it
        must only read plain state (a ``len``, an attribute, a dict copied with ``list``)."""

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                value = read()
            except Exception:  # a broken reading must not break the whole scrape
                _log.exception("reading metric %s failed", name)
                return []
            if isinstance(value, int | float):
                return [Observation(value)]
            return [Observation(v, dict(attrs)) for attrs, v in value]

        if kind == "counter":
            self.meter.create_observable_counter(
                name, callbacks=[callback], unit=unit, description=description
            )
        else:
            self.meter.create_observable_gauge(
                name, callbacks=[callback], unit=unit, description=description
            )
