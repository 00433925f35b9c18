"""OpenTelemetry set-up shared by every service."""

from __future__ import annotations

import logging

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

log = logging.getLogger(__name__)


def setup_tracing(service: str, otlp_endpoint: str | None,
                  exporter: SpanExporter | None = None) -> TracerProvider:
    """Install a tracer provider; export over OTLP when an endpoint is configured."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"lifeline-{service}"}))
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
        log.info("exporting traces to %s", otlp_endpoint)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_context() -> dict[str, str]:
    """The caller's trace context as W3C headers (empty outside a span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
