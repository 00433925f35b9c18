"""The gRPC edge: errors as status codes, health, reflection, tracing, client channels."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor

from lifeline.errors import LifelineError

log = logging.getLogger(__name__)


def _status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, LifelineError):
        return error.code, str(error)
    if isinstance(error, psycopg.OperationalError):
        return grpc.StatusCode.UNAVAILABLE, "the event store is unreachable; retry shortly"
    log.exception("unexpected error")
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns LifelineError (and backend outages) into the matching gRPC status."""

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails
                                ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        kwargs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_stream(handler.unary_stream), **kwargs)
        return grpc.stream_stream_rpc_method_handler(_stream(handler.stream_stream), **kwargs)


def _unary(behaviour: Any) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behaviour(request, context)
        except Exception as error:
            code, message = _status_of(error)
            await context.abort(code, message)

    return call


def _stream(behaviour: Any) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behaviour(request, context):
                yield item
        except Exception as error:
            code, message = _status_of(error)
            await context.abort(code, message)

    return call


class Server:
    """A grpc.aio server with health checking, reflection, tracing and error mapping."""

    def __init__(self) -> None:
        self.server = grpc.aio.server(interceptors=[aio_server_interceptor(), ErrorInterceptor()])
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]

    def add(self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any,
            full_name: str) -> None:
        add_to_server(servicer, self.server)
        self.names.append(full_name)

    async def start(self, listen: str) -> int:
        reflection.enable_server_reflection([*self.names, reflection.SERVICE_NAME], self.server)
        port = self.server.add_insecure_port(listen)
        await self.server.start()
        for name in ["", *self.names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def channel(address: str, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
            ) -> grpc.aio.Channel:
    """A client channel that carries the caller's trace context in gRPC metadata."""
    return grpc.aio.insecure_channel(address, interceptors=[*aio_client_interceptors(),
                                                            *interceptors])
