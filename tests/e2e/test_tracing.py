"""One trace runs from the sensor reading through the warning and the incident to the unit
assignment, across monitor, dispatch and resources (gRPC metadata and NATS headers)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from lifeline.scenario import SCENARIOS, Player, Scenario, wait_until
from opentelemetry.instrumentation.grpc import client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from tests.conftest import StackFactory


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC endpoint that keeps the spans the services export."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes]] = []  # (service, span name, trace id)
        self.lock = threading.Lock()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes
                               if a.key == "service.name")
                for scope in resource_spans.scope_spans:
                    self.spans.extend((service, s.name, s.trace_id) for s in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def by_trace(self) -> dict[bytes, set[tuple[str, str]]]:
        traces: dict[bytes, set[tuple[str, str]]] = defaultdict(set)
        with self.lock:
            for service, name, trace_id in self.spans:
                traces[trace_id].add((service, name))
        return traces


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(0)


def test_one_trace_from_reading_to_unit_assignment(make_stack: StackFactory,
                                                   collector: tuple[Collector, int]) -> None:
    spans, port = collector
    stack = make_stack({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                        "OTEL_BSP_SCHEDULE_DELAY": "50"})
    # The gateway traces its call like any instrumented client would.
    provider = TracerProvider()
    tracer = provider.get_tracer("sensor-gateway")
    player = Player(stack.addresses(), stack, say=lambda _: None)
    player.monitor = type(player.monitor)(intercept_channel(
        player.channels["monitor"], client_interceptor(tracer_provider=provider)))
    scenario = Scenario.load(SCENARIOS / "underpass_flood.toml")
    with tracer.start_as_current_span("gateway batch") as root:
        trace_id = root.get_span_context().trace_id.to_bytes(16, "big")
        player.play(Scenario(scenario.name, scenario.start, scenario.sensors, scenario.units,
                             scenario.steps[:5]))  # readings through the declaration

    wanted = {
        ("lifeline-monitor", "/lifeline.monitor.v1.MonitorService/IngestReadingBatch"),
        ("lifeline-monitor", "publish lifeline.monitor.warning.raised"),
        ("lifeline-dispatch", "consume lifeline.monitor.warning.raised"),
        ("lifeline-dispatch", "publish lifeline.dispatch.incident.resources_requested"),
        ("lifeline-resources", "consume lifeline.dispatch.incident.resources_requested"),
        ("lifeline-resources", "publish lifeline.resources.request.answered"),
        ("lifeline-dispatch", "consume lifeline.resources.request.answered"),
        ("lifeline-dispatch", "publish lifeline.dispatch.incident.unit_assigned"),
    }
    wait_until(lambda: wanted <= spans.by_trace()[trace_id],
               "every span of the reading's trace to reach the collector", timeout=20)
    player.close()
