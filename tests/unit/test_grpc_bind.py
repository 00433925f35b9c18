"""A service's port is its own: a second server asked to listen on it fails at start
instead of sharing the callers with the first (gRPC's default SO_REUSEPORT)."""

from __future__ import annotations

import pytest
from lifeline.grpcutil import Server
from lifeline.identity import ANONYMOUS


async def test_a_second_server_on_a_taken_port_fails_to_start() -> None:
    first, second = (Server(lambda method, metadata: ANONYMOUS, reflection=False)
                     for _ in range(2))
    port = await first.start("127.0.0.1:0")
    try:
        with pytest.raises(RuntimeError, match=str(port)):
            await second.start(f"127.0.0.1:{port}")
    finally:
        for server in (second, first):
            await server.server.stop(None)
