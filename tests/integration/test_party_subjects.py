"""A notified party reads exactly its own notifications on a real nats-server configured by
`lifeline.identity.nats.server_config`: live on its subject and from monitor's stream through
a consumer of its own filtered to it; another party's subject is refused by the server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
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
ROOT = Path(__file__).resolve().parents[2]


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
            # The clients run in an interpreter of their own: after the operator CLIs ran
            # in the test process (tests/e2e/test_cli.py), a subscriber here sometimes got
            # nothing (1 run in 3; gRPC's threads were left behind; not explained yet).
            subprocess.run([sys.executable, "-m", "tests.integration.test_party_subjects",
                            f"nats://127.0.0.1:{port}"], cwd=ROOT, check=True, timeout=60)
        finally:
            server.terminate()
            server.wait(10)


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
    await party.flush()
    # Published again (the same message id: stored once) until it arrives, 10 s at most: now
    # and then, in a full suite run, the first publish reached no one though the
    # subscription was flushed, even in this interpreter of its own (not explained yet).
    mine = None
    for _ in range(10):
        await js.publish("lifeline.monitor.notification.wang-fang.notified", b"wang-fang",
                         headers={"Nats-Msg-Id": "wang-fang-1"})
        try:
            mine = await live.next_msg(timeout=1)
            break
        except nats.errors.TimeoutError:
            continue
    assert mine is not None, f"nothing reached the party's own subject; errors: {errors}"
    assert mine.data == b"wang-fang"
    # Another party's subject: the server refuses the subscription and delivers nothing.
    other = await party.subscribe("lifeline.monitor.notification.water.>")
    await party.flush()
    await js.publish("lifeline.monitor.notification.water.notified", b"water")
    with pytest.raises(nats.errors.TimeoutError):
        await other.next_msg(timeout=0.3)
    assert any("permissions violation for subscription" in e.lower() and "water" in e
               for e in errors), errors

    stored = await party.jetstream().pull_subscribe(
        "lifeline.monitor.notification.wang-fang.>", durable=f"notify-{user}",
        stream=stream_name("monitor"))
    fetched = await stored.fetch(5, timeout=2)
    assert [m.data for m in fetched] == [b"wang-fang"]
    # A consumer filtered to another party's subject: the server refuses the API call.
    errors.clear()
    with pytest.raises(nats.errors.TimeoutError):
        await party.request(
            f"$JS.API.CONSUMER.CREATE.{stream_name('monitor')}.notify-{user}-w."
            "lifeline.monitor.notification.water.>", b"{}", timeout=0.5)
    assert any("permissions violation for publish" in e.lower() for e in errors), errors
    await party.close()
    await monitor.close()


if __name__ == "__main__":
    asyncio.run(_check(sys.argv[1]))
