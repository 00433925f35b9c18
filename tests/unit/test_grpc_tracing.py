"""Server spans: every call that answers once is traced; a watch its caller abandons ends
without an ERROR traceback in the service's log."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from lifeline.grpcutil import UnaryTracing
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


async def flood(request: bytes, context: Any) -> AsyncIterator[bytes]:
    """A watch with more to say than its caller reads: it waits mid-write."""
    while True:
        yield b"x" * 1_000_000


async def echo(request: bytes, context: Any) -> bytes:
    return request


async def abandon_watches_and_call(interceptor: Any, watches: int = 3) -> None:
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.City", {
        "Watch": grpc.unary_stream_rpc_method_handler(flood),
        "Get": grpc.unary_unary_rpc_method_handler(echo)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(watches):
                call = channel.unary_stream("/t.City/Watch")(b"")
                await call.read()  # then the caller reads no more, and goes away
                call.cancel()
            assert await channel.unary_unary("/t.City/Get")(b"ok", timeout=10) == b"ok"
        gc.collect()  # abandoned streams are closed when collected
        await asyncio.sleep(0)
    finally:
        await server.stop(None)


@pytest.mark.parametrize("tracing", ["opentelemetry's", "lifeline's"])
def test_an_abandoned_watch_logs_no_error_and_calls_are_still_traced(
        tracing: str, caplog: pytest.LogCaptureFixture) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    interceptor = (aio_server_interceptor(tracer_provider=provider)
                   if tracing == "opentelemetry's" else UnaryTracing(provider))
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        asyncio.run(abandon_watches_and_call(interceptor))
    failed = [r for r in caplog.records if r.name == "opentelemetry.context"]
    names = [span.name for span in spans.get_finished_spans()]
    assert "/t.City/Get" in names
    if tracing == "opentelemetry's":
        # The library's own interceptor shows the fault the service would otherwise log
        # (opentelemetry-python-contrib#2357): if this starts passing, drop UnaryTracing.
        assert failed, "opentelemetry's interceptor no longer fails on abandoned streams"
    else:
        assert not failed, [r.getMessage() for r in failed]
        assert "/t.City/Watch" not in names
