"""With ``[telemetry] exporter = "otlp"`` a server pushes its metrics to an OTLP receiver
(here a real OTLP/gRPC MetricsService on loopback that keeps what it is sent)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as otlp_grpc

from procall.settings import Settings
from tests.helpers.topology import StartApp


class _Receiver(otlp_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.services: set[str] = set()

    async def Export(  # noqa: N802 (the generated name)
        self, request: otlp_pb.ExportMetricsServiceRequest, context: Any
    ) -> otlp_pb.ExportMetricsServiceResponse:
        for resource in request.resource_metrics:
            for attribute in resource.resource.attributes:
                if attribute.key == "service.instance.id":
                    self.services.add(attribute.value.string_value)
            for scope in resource.scope_metrics:
                self.names.update(metric.name for metric in scope.metrics)
        return otlp_pb.ExportMetricsServiceResponse()


async def test_metrics_are_pushed_to_the_otlp_endpoint(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    receiver = _Receiver()
    server = grpc.aio.server()
    otlp_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        settings = make_settings()
        settings.server.server_id = "media-otlp"
        settings.media.host_addresses = ["127.0.0.1"]
        settings.telemetry.exporter = "otlp"
        settings.telemetry.otlp_endpoint = f"http://127.0.0.1:{port}"
        settings.telemetry.metrics_export_seconds = 0.2
        media = await start_app("media", settings)
        deadline = asyncio.get_running_loop().time() + 10
        while "procall.media.calls" not in receiver.names:
            assert asyncio.get_running_loop().time() < deadline, receiver.names
            await asyncio.sleep(0.1)
        assert {"procall.media.legs", "procall.event_loop.lag"} <= receiver.names
        assert receiver.services == {"media-otlp"}
        await media.stop(0)  # its last push still finds the receiver
    finally:
        await server.stop(0)
