"""The outbox and the inbox against real NATS JetStream and PostgreSQL.

The relay publishes every event once, in order, and resumes from its durable position; a
consumer's effects are written with the stream position, so a redelivered message, in
either order, changes nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from eventsourcing.persistence import Tracking
from google.protobuf.message import Message
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import EmbeddedNats
from lifeline.events import Cause
from lifeline.incident.model import Incident
from lifeline.incident.v1 import incident_pb2
from lifeline.store import ServiceApplication
from nats.js import JetStreamContext

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


class Ledger(ServiceApplication):
    """A small application of incidents, as dispatch keeps them."""

    name = "ledger"


@pytest.fixture
def nats_url() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="lifeline-nats-"))
    server = EmbeddedNats(root)
    yield server.start()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


def open_incident(app: Ledger, warning: str) -> Incident:
    incident = Incident.open_for_warning(warning, "urban_flooding", common_pb2.WARNING_LEVEL_RED,
                                         common_pb2.GeoPoint(lat=31.2, lon=121.4), "3120_12140",
                                         Cause("monitor", NOW), NOW)
    app.record(incident)
    return incident


async def stream_subjects(js: JetStreamContext, stream: str) -> list[tuple[str, str]]:
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        out.append((msg.subject, (msg.headers or {})["Nats-Msg-Id"]))
    return out


async def run_until(worker: bus.OutboxRelay | bus.Inbox, done: object, timeout: float = 10
                    ) -> None:
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():  # type: ignore[operator]
                await asyncio.sleep(0.01)
    finally:
        worker.stopping.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_relay_publishes_each_event_once_in_order_and_resumes(
        js: JetStreamContext, database_url: str) -> None:
    app = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incident = open_incident(app, "w-1")
    second = open_incident(app, "w-2")

    relay = bus.OutboxRelay(app, js, "ledger")
    await run_until(relay, lambda: relay.position == 2)
    published = await stream_subjects(js, "LIFELINE_LEDGER")
    assert published == [("lifeline.ledger.incident.opened", f"{incident.id}/1"),
                         ("lifeline.ledger.incident.opened", f"{second.id}/1")]

    # A new relay (a restarted service) resumes after what was confirmed: nothing twice.
    again = bus.OutboxRelay(app, js, "ledger")
    await run_until(again, lambda: again.position == 2)
    assert await stream_subjects(js, "LIFELINE_LEDGER") == published

    # Even a relay that lost its position republishes nothing new: JetStream drops the
    # duplicates by Nats-Msg-Id (inside the duplicate window).
    forgetful = bus.OutboxRelay(app, js, "ledger")
    forgetful.position = 0
    await run_until(forgetful, lambda: forgetful.position == 2)
    assert await stream_subjects(js, "LIFELINE_LEDGER") == published
    app.close()


def test_tracking_refuses_repeats_in_either_order(database_url: str) -> None:
    """A redelivery of a message older than one already processed is still recognised, and
    an older message processed after a newer one is not mistaken for a repeat."""
    app = Ledger(database_url)
    newer, older = Tracking("LIFELINE_MONITOR", 7), Tracking("LIFELINE_MONITOR", 3)
    app.record(open_incident_pending(app, "w-7"), tracking=newer)
    assert not app.is_processed(older)
    app.record(open_incident_pending(app, "w-3"), tracking=older)
    assert app.is_processed(older) and app.is_processed(newer)
    app.close()


def open_incident_pending(app: Ledger, warning: str) -> Incident:
    return Incident.open_for_warning(warning, "urban_flooding", common_pb2.WARNING_LEVEL_RED,
                                     common_pb2.GeoPoint(lat=31.2, lon=121.4), "3120_12140",
                                     Cause("monitor", NOW), NOW)


async def test_redelivered_messages_change_nothing(js: JetStreamContext,
                                                    database_url: str) -> None:
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    for n in range(5):
        open_incident(upstream, f"w-{n}")
    relay = bus.OutboxRelay(upstream, js, "ledger")
    await run_until(relay, lambda: relay.position == 5)

    class Copier(ServiceApplication):
        name = "copier"

    downstream = Copier(database_url)
    handled: list[str] = []

    async def handle(subject: str, wrapper: Message, tracking: Tracking) -> None:
        assert isinstance(wrapper, incident_pb2.IncidentEvent)
        copy = Incident.open_for_warning(f"copy-{wrapper.opened.warning_id}", "x", 1,
                                         common_pb2.GeoPoint(), "", Cause("copier", NOW), NOW)
        await asyncio.to_thread(downstream.record, copy, tracking=tracking)
        handled.append(wrapper.opened.warning_id)

    def inbox(name: str) -> bus.Inbox:
        return bus.Inbox(downstream, js, consumer=name, upstream="ledger",
                         subjects=["lifeline.ledger.incident.>"],
                         message_types={"lifeline.incident.v1.IncidentEvent":
                                        incident_pb2.IncidentEvent}, handle=handle)

    first = inbox("copier")
    await run_until(first, lambda: first.processed == 5)
    assert sorted(handled) == [f"w-{n}" for n in range(5)]
    # A second durable consumer delivers every message again: the same stream positions,
    # so the handler is not even called and nothing is written twice.
    replay = inbox("copier-replay")
    await run_until(replay, lambda: replay.processed == 5)
    assert len(handled) == 5
    assert downstream.recorder.max_notification_id() == 5
    upstream.close()
    downstream.close()
