"""A notified party reads exactly its own notifications on a real nats-server configured by
`lifeline.identity.nats.server_config`: live on its subject and from monitor's stream through
a consumer of its own filtered to it; another party's subject is refused by the server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import nats
import pytest
from lifeline.embedded import EmbeddedNats
from lifeline.identity.nats import party_user, server_config, stream_name
from lifeline.processes import free_port
from nats.js import api

pytestmark = pytest.mark.integration
PASSWORDS = {"monitor": "monitor-secret", "observer": "observer-secret"}
PARTIES = {"wang-fang": "wang-secret", "water": "water-secret"}


def test_a_party_reads_its_own_notifications_and_no_one_elses() -> None:
    with tempfile.TemporaryDirectory() as root:
        config = Path(root) / "nats.conf"
        config.write_text(server_config(passwords=PASSWORDS, parties=PARTIES))
        port = free_port()
        server = subprocess.Popen(
            [EmbeddedNats.binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd",
             str(Path(root) / "js"), "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "nats-server did not start"
                    time.sleep(0.05)  # poll for the port until the deadline above
            asyncio.run(_check(f"nats://127.0.0.1:{port}"))
        finally:
            server.terminate()
            server.wait(10)


async def _caught_up(client: nats.NATS) -> None:
    """Return once the server has handled all the client sent (a SUB, a PUB). Not flush():
    nats-py writes its PING straight to the socket, ahead of a SUB still queued for its
    flusher task, so the PONG can come back before the server has the subscription, and a
    message published then reaches no one. A request goes out through that queue, after
    the rest: its answer comes once the server has handled them."""
    await client.jetstream().account_info()


async def _check(url: str) -> None:
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    monitor = await nats.connect(url, user="monitor", password=PASSWORDS["monitor"],
                                 inbox_prefix="_INBOX_monitor")
    js = monitor.jetstream()
    await js.add_stream(api.StreamConfig(name=stream_name("monitor"),
                                         subjects=["lifeline.monitor.>"]))
    user = party_user("wang-fang")
    party = await nats.connect(url, user=user, password=PARTIES["wang-fang"],
                               inbox_prefix=f"_INBOX_{user}", error_cb=on_error)
    live = await party.subscribe("lifeline.monitor.notification.wang-fang.>")
    await _caught_up(party)
    await js.publish("lifeline.monitor.notification.wang-fang.notified", b"wang-fang")
    mine = await live.next_msg(timeout=10)
    assert mine.data == b"wang-fang"
    # Another party's subject: the server refuses the subscription (its error comes before
    # the request's answer) and delivers nothing. What monitor publishes after it, on the
    # party's own subject, arrives after it would have.
    other = await party.subscribe("lifeline.monitor.notification.water.>")
    await _caught_up(party)
    assert any("permissions violation for subscription" in e.lower() and "water" in e
               for e in errors), errors
    await js.publish("lifeline.monitor.notification.water.notified", b"water")
    await js.publish("lifeline.monitor.notification.wang-fang.notified", b"after")
    assert (await live.next_msg(timeout=10)).data == b"after"
    assert other.pending_msgs == 0

    stored = await party.jetstream().pull_subscribe(
        "lifeline.monitor.notification.wang-fang.>", durable=f"notify-{user}",
        stream=stream_name("monitor"))
    fetched = await stored.fetch(5, timeout=2)
    assert [m.data for m in fetched] == [b"wang-fang", b"after"]
    # A consumer filtered to another party's subject: the server refuses the API call, and
    # says so before it answers anything sent after it.
    errors.clear()
    await party.publish(f"$JS.API.CONSUMER.CREATE.{stream_name('monitor')}.notify-{user}-w."
                        "lifeline.monitor.notification.water.>", b"{}")
    await _caught_up(party)
    assert any("permissions violation for publish" in e.lower() and "notify-party-wang-fang-w"
               in e for e in errors), errors
    await party.close()
    await monitor.close()

