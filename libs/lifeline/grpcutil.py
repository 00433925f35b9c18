"""The gRPC edge: errors as status codes, health, reflection, tracing, client channels."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psycopg
from eventsourcing import persistence as es_persistence
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor

from lifeline import idempotency
from lifeline.config import Security
from lifeline.errors import InvalidArgument, LifelineError, Unauthenticated, Unavailable
from lifeline.identity import ANONYMOUS, Identity, set_caller
from lifeline.identity.roles import DEFAULT_MATRIX, RoleMatrix
from lifeline.identity.tokens import TokenVerifier
from lifeline.validation import check_request

log = logging.getLogger(__name__)


#: What a backend outage looks like from here: the event store (psycopg, wrapped by the
#: eventsourcing library), the read model (asyncpg, sockets).
BACKEND_DOWN: tuple[type[Exception], ...] = (
    psycopg.OperationalError, psycopg.InterfaceError, es_persistence.OperationalError,
    es_persistence.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError, ConnectionError, OSError)
MAX_MESSAGE = 512


def _status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, LifelineError):
        message = str(error)
        if len(message) > MAX_MESSAGE:  # never echo a whole hostile value back
            message = message[:MAX_MESSAGE] + "…"
        return grpc.StatusCode[error.code], message
    if isinstance(error, BACKEND_DOWN):
        return grpc.StatusCode.UNAVAILABLE, "the database is unreachable; retry shortly"
    log.exception("unexpected error")
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"


Guard = Callable[[str, Sequence[tuple[str, Any]]], Identity]
PUBLIC_METHODS = ("/grpc.health.v1.Health/",)
REFLECTION_METHODS = ("/grpc.reflection.v1alpha.ServerReflection/",
                      "/grpc.reflection.v1.ServerReflection/")
MAX_TOKEN_BYTES = 8192


class Authenticator:
    """Who is calling (a verified bearer token) and whether the role matrix lets them."""

    def __init__(self, verifier: TokenVerifier | None, matrix: RoleMatrix) -> None:
        self.verifier, self.matrix = verifier, matrix

    @classmethod
    def configured(cls, security: Security) -> Authenticator:
        verifier = None
        if security.auth_on:
            verifier = TokenVerifier.configured(security.auth_keys, security.jwks_url,
                                                security.jwks_issuer, security.jwks_audience)
        matrix = RoleMatrix.load(Path(security.roles_file or DEFAULT_MATRIX))
        return cls(verifier, matrix)

    def __call__(self, method: str, metadata: Sequence[tuple[str, Any]]) -> Identity:
        if self.verifier is None:  # LIFELINE_AUTH=off, chosen explicitly
            return ANONYMOUS
        header = next((v for k, v in metadata if k == "authorization"), None)
        if not isinstance(header, str) or not header.startswith("Bearer "):
            raise Unauthenticated("no bearer token; send 'authorization: Bearer <token>' "
                                  "(get one with `lifeline token`)")
        token = header.removeprefix("Bearer ").strip()
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("token: longer than any token Lifeline issues")
        claims = self.verifier.verify(token)
        if method.startswith(REFLECTION_METHODS):
            return Identity(str(claims["sub"]), frozenset(claims["roles"]))
        return self.matrix.authorize(method, claims)


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Every call: authenticate and authorize (health aside), make the caller's identity
    current, and turn LifelineError (and backend outages) into the matching gRPC status."""

    def __init__(self, guard: Guard, ready: Callable[[], str | None]) -> None:
        self.guard, self.ready = guard, ready

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails
                                ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        guard = None if method.startswith(PUBLIC_METHODS) else self._admit_when_ready
        kwargs = {"request_deserializer": _lenient(handler.request_deserializer),
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method, guard), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, method, guard), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _stream(handler.unary_stream, method, guard), **kwargs)
        return grpc.stream_stream_rpc_method_handler(
            _stream(handler.stream_stream, method, guard), **kwargs)

    def _admit_when_ready(self, method: str, metadata: Sequence[tuple[str, Any]]) -> Identity:
        identity = self.guard(method, metadata)
        down = self.ready()
        if down is not None:
            raise Unavailable(f"{down}; retry shortly")
        return identity


class Undecodable:
    """What arrived where a request message should be: bytes that do not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Bytes that do not parse become an Undecodable the edge refuses as INVALID_ARGUMENT,
    instead of gRPC's own INTERNAL."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            return Undecodable(error)

    return parse


def _checked(request: Any, where: str = "request") -> None:
    if isinstance(request, Undecodable):
        raise InvalidArgument(where, "not a valid message of this RPC's request type "
                                     "(malformed protobuf or invalid UTF-8)")
    if isinstance(request, Message):
        check_request(request)


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    index = 0
    async for request in requests:
        try:
            _checked(request)
        except InvalidArgument as error:
            raise InvalidArgument(f"requests[{index}].{error.field}",
                                  str(error).split(": ", 1)[1]) from None
        index += 1
        yield request


def _admit(guard: Guard | None, method: str, context: grpc.aio.ServicerContext,
           request: Any = None) -> None:
    if guard is None:
        return
    metadata = [(k, v) for k, v in context.invocation_metadata() or ()]
    identity = guard(method, metadata)
    set_caller(identity)
    _checked(request)
    if isinstance(request, Message):
        key = next((v for k, v in metadata if k == idempotency.HEADER), None)
        idempotency.admit(identity.name, method, key if isinstance(key, str) or key is None
                          else key.decode(errors="replace"), request,
                          context.time_remaining())


def _unary(behaviour: Any, method: str, guard: Guard | None) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            _admit(guard, method, context, request)
            if guard is not None and not isinstance(request, Message | Undecodable):
                request = _checked_stream(request)  # a client stream: each item in turn
            return await behaviour(request, context)
        except Exception as error:
            code, message = _status_of(error)
            await context.abort(code, message)

    return call


def _stream(behaviour: Any, method: str, guard: Guard | None) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            _admit(guard, method, context, request)
            async for item in behaviour(request, context):
                yield item
        except Exception as error:
            code, message = _status_of(error)
            await context.abort(code, message)

    return call


#: gRPC's default SO_REUSEPORT let a second server bind a port another one serves on: the
#: kernel then shared the callers between them, and a caller of dispatch could be answered
#: "Method not found" by another process's server. A taken port now fails at start.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]


async def health_probe(listen: str, health: Any) -> grpc.aio.Server:
    """Serve health checking alone on listen, in plaintext, for probes that cannot speak
    TLS (Kubernetes' gRPC probes)."""
    probe = grpc.aio.server(options=SERVER_OPTIONS)
    health_pb2_grpc.add_HealthServicer_to_server(health, probe)
    probe.add_insecure_port(listen)
    await probe.start()
    return probe


class UnaryTracing(grpc.aio.ServerInterceptor):
    """OpenTelemetry's server spans, for calls that answer once. A stream's span would be
    held across its `yield`s, and when its caller goes away the stream is closed in another
    context, where the instrumentation logs an ERROR traceback for every watch that ends
    (opentelemetry-python-contrib#2357); a watch lasting a shift is no useful span either."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.traced = aio_server_interceptor(tracer_provider=tracer_provider)

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.response_streaming:
            return handler

        async def found(_details: grpc.HandlerCallDetails) -> Any:
            return handler

        return await self.traced.intercept_service(found, details)


class Server:
    """A grpc.aio server with health checking, reflection, tracing and error mapping."""

    def __init__(self, guard: Guard, *, ready: Callable[[], str | None] = lambda: None,
                 reflection: bool = True) -> None:
        self.server = grpc.aio.server(interceptors=[UnaryTracing(),
                                                    EdgeInterceptor(guard, ready)],
                                      options=SERVER_OPTIONS)
        self.serving = True
        self.reflection = reflection
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        self.probe: grpc.aio.Server | None = None

    def add(self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any,
            full_name: str) -> None:
        add_to_server(servicer, self.server)
        self.names.append(full_name)

    async def start(self, listen: str, tls: tuple[bytes, bytes] | None = None,
                    health_listen: str = "") -> int:
        """Serve on listen; with tls = (private key PEM, certificate chain PEM) over TLS;
        and health checking alone on health_listen (health_probe)."""
        if health_listen:
            self.probe = await health_probe(health_listen, self.health)
        if self.reflection:
            reflection.enable_server_reflection([*self.names, reflection.SERVICE_NAME],
                                                self.server)
        port = (self.server.add_secure_port(listen, grpc.ssl_server_credentials([tls]))
                if tls else self.server.add_insecure_port(listen))
        await self.server.start()
        self.serving = False
        await self.set_serving(True)
        return port

    async def set_serving(self, serving: bool) -> None:
        """What the health service answers, for the whole server and each service on it."""
        if serving == self.serving:
            return
        self.serving = serving
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.probe is not None:
            await self.probe.stop(0)


#: A client's service config: calls that never reached a service (UNAVAILABLE: a restart,
#: a standby replica taking over) wait for a connection and are retried. Commands carry an
#: idempotency key, so a retried command that had in fact committed happens once.
RETRY_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{}], "waitForReady": True,
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.25s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def channel_options(target: str, *, retry: bool = True) -> list[tuple[str, Any]]:
    """Options of a client channel; with retry, one that rides out a restart or a takeover.
    A target listing several replicas (``ipv4:10.0.0.5:50051,10.0.0.6:50051``) names no
    single host for TLS to check the certificate against, so the first host stands for all
    of them."""
    options: list[tuple[str, Any]] = ([("grpc.service_config", RETRY_SERVICE_CONFIG),
                                       ("grpc.enable_retries", 1)] if retry else [])
    scheme, _, hosts = target.partition(":")
    if scheme in ("ipv4", "ipv6") and "," in hosts:
        first = hosts.split(",")[0]
        host = first.rsplit(":", 1)[0] if scheme == "ipv4" else first.rsplit("]:", 1)[0] + "]"
        options.append(("grpc.default_authority", host))
    return options


def client_credentials(ca_pem: bytes | None, token: str | None = None
                       ) -> grpc.ChannelCredentials:
    """TLS trusting ca_pem (or plaintext to loopback only, when None), plus the bearer
    token on every call."""
    base = (grpc.ssl_channel_credentials(root_certificates=ca_pem) if ca_pem
            else grpc.local_channel_credentials())
    return TokenCredentials(base, token) if token else base


class TokenCredentials(grpc.ChannelCredentials):
    """Channel credentials with a bearer token on every call. A blocking channel sends it
    as gRPC call credentials; `channel()` (asyncio) sends it from an interceptor instead,
    on the same secure channel: call credentials run a Python plugin on one of gRPC's
    threads for every call, a sizeable share of a short call's time and more of its
    tail."""

    def __init__(self, base: grpc.ChannelCredentials, token: str) -> None:
        composite = grpc.composite_channel_credentials(
            base, grpc.access_token_call_credentials(token))
        super().__init__(composite._credentials)  # type: ignore[attr-defined]
        self.base, self.token = base, token


class _Bearer:
    """Adds `authorization: Bearer <token>` to a call's metadata."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    async def _with_token(self, continuation: Any, details: Any, request: Any) -> Any:
        """Every kind of call alike (the request, or the stream of them, passed on)."""
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self.header)
        return await continuation(details._replace(metadata=metadata), request)


# One interceptor per kind of call: grpc.aio files an interceptor under the first kind it
# is an instance of only, so one object of all four kinds would see unary calls alone.
class _BearerUnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _Bearer._with_token  # type: ignore[assignment]


class _BearerUnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _Bearer._with_token  # type: ignore[assignment]


class _BearerStreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _Bearer._with_token  # type: ignore[assignment]


class _BearerStreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _Bearer._with_token  # type: ignore[assignment]


def bearer(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors adding the bearer token to every call, of every kind."""
    return [kind(token) for kind in (_BearerUnaryUnary, _BearerUnaryStream,
                                     _BearerStreamUnary, _BearerStreamStream)]


def channel(address: str, credentials: grpc.ChannelCredentials,
            interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> grpc.aio.Channel:
    """A client channel that carries the caller's trace context in gRPC metadata (to
    one address, or to every replica's: see channel_options)."""
    if isinstance(credentials, TokenCredentials):
        interceptors = [*bearer(credentials.token), *interceptors]
        credentials = credentials.base
    return grpc.aio.secure_channel(address, credentials,
                                   options=channel_options(address, retry=False),
                                   interceptors=[*aio_client_interceptors(), *interceptors])
