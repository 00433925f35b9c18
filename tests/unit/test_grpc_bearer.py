"""An asyncio channel made with a token sends it on every kind of call, watches included
(grpc.aio files an interceptor under one kind of call only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from lifeline.grpcutil import bearer


def token_of(context: Any) -> bytes:
    return dict(context.invocation_metadata()).get("authorization", "").encode()


async def unary(request: bytes, context: Any) -> bytes:
    return token_of(context)


async def streamed(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield token_of(context)


async def from_stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
    async for _ in requests:
        pass
    return token_of(context)


async def both_ways(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield token_of(context)


async def test_every_kind_of_call_carries_the_token() -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Desk", {
        "Get": grpc.unary_unary_rpc_method_handler(unary),
        "Watch": grpc.unary_stream_rpc_method_handler(streamed),
        "Send": grpc.stream_unary_rpc_method_handler(from_stream),
        "Talk": grpc.stream_stream_rpc_method_handler(both_ways)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                             interceptors=bearer("t0k3n")) as channel:
            async def one() -> AsyncIterator[bytes]:
                yield b""

            answers = {
                "unary": await channel.unary_unary("/t.Desk/Get")(b""),
                "server streaming": [m async for m in channel.unary_stream("/t.Desk/Watch")(b"")],
                "client streaming": await channel.stream_unary("/t.Desk/Send")(one()),
                "both ways": [m async for m in channel.stream_stream("/t.Desk/Talk")(one())],
            }
    finally:
        await server.stop(0)
    expected = b"Bearer t0k3n"
    assert answers == {"unary": expected, "server streaming": [expected],
                       "client streaming": expected, "both ways": [expected]}
