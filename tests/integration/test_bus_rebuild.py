"""A stream is a cache of the outbox: lost while everything runs, it is recreated and
refilled from the store with what its consumers had not taken; a consumer whose durable
vanished recreates it and takes nothing twice; an operator's republish goes through the
same relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from lifeline import bus
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tests.integration.test_messaging import (  # noqa: F401 (fixtures)
    Keeper,
    Ledger,
    eventually,
    grow,
    js,
    nats_url,
    open_incident,
    stream_subjects,
)

STREAM = "LIFELINE_LEDGER"


@pytest.fixture
async def ledger(js: JetStreamContext, database_url: str  # noqa: F811
                 ) -> AsyncIterator[tuple[Ledger, bus.OutboxRelay]]:
    """The upstream application with its relay running."""
    app = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    relay = bus.OutboxRelay(app, js, "ledger")
    task = asyncio.create_task(relay.run())
    yield app, relay
    relay.stopping.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    app.close()


async def until_recreated(js: JetStreamContext, timeout: float = 10) -> None:  # noqa: F811
    """Wait until the stream exists again (the relay recreates it)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                await js.stream_info(STREAM)
                return
            except NotFoundError:
                await asyncio.sleep(0.05)  # the poll interval; bounded by the timeout


async def ids_in_stream(js: JetStreamContext) -> list[str]:  # noqa: F811
    return [msg_id for _, msg_id in await stream_subjects(js, STREAM)]


async def test_a_lost_stream_is_recreated_and_refilled_with_what_a_consumer_had_not_taken(
        js: JetStreamContext, database_url: str,  # noqa: F811
        ledger: tuple[Ledger, bus.OutboxRelay]) -> None:
    upstream, relay = ledger
    keeper = Keeper(js, database_url, max_attempts=1000)
    keeper.start()
    try:
        taken = open_incident(upstream, "w-1")
        grow(upstream, taken, 2)
        await keeper.until_complete(taken)
        # The keeper cannot take this one yet: it is in the stream, not in the keeper.
        pending = open_incident(upstream, "w-2")
        grow(upstream, pending, 2)
        keeper.poisoned.add(str(pending.id))
        await eventually(lambda: relay.position == 6)
        await js.delete_stream(STREAM)  # nothing here recreates it: the relay must

        keeper.poisoned.clear()
        grow(upstream, taken, 1)
        await keeper.until_complete(taken, pending, timeout=20)
        # Refilled from where the keeper's taking stopped, not from the start; each once.
        held = await ids_in_stream(js)
        assert sorted(held) == sorted([f"{pending.id}/{v}" for v in (1, 2, 3)]
                                      + [f"{taken.id}/4"])
        assert relay.refills >= 1
    finally:
        await keeper.stop()


async def test_a_consumer_down_while_its_upstream_stream_is_lost_gets_what_it_missed(
        js: JetStreamContext, database_url: str,  # noqa: F811
        ledger: tuple[Ledger, bus.OutboxRelay]) -> None:
    """The consumer's service is down through the loss; when it starts, its store says how
    far it took the outbox, and the relay republishes the rest."""
    upstream, relay = ledger
    first = Keeper(js, database_url)
    first.start()
    incident = open_incident(upstream, "w-1")
    await first.until_complete(incident)
    await eventually(lambda: first.inbox.taken is not None and
                     first.inbox._saved_taken >= 1, 5)  # kept in its store
    await first.stop()

    grow(upstream, incident, 3)  # published while the consumer is down...
    await eventually(lambda: relay.position == 4)
    await js.delete_stream(STREAM)  # ...and lost with the stream
    await until_recreated(js)

    second = Keeper(js, database_url)
    second.start()
    try:
        await second.until_complete(incident, timeout=20)
        assert f"{incident.id}/1" not in await ids_in_stream(js)
    finally:
        await second.stop()


async def test_a_consumer_whose_durable_vanished_recreates_it_and_takes_nothing_twice(
        js: JetStreamContext, database_url: str,  # noqa: F811
        ledger: tuple[Ledger, bus.OutboxRelay]) -> None:
    upstream, _ = ledger
    keeper = Keeper(js, database_url)
    keeper.start()
    try:
        incident = open_incident(upstream, "w-1")
        grow(upstream, incident, 2)
        await keeper.until_complete(incident)
        kept = keeper.app.recorder.max_notification_id()
        await js.delete_consumer(STREAM, "keeper")
        later = open_incident(upstream, "w-2")
        await keeper.until_complete(incident, later)
        # The stream's whole content came again: recognised, nothing written twice.
        assert keeper.app.recorder.max_notification_id() == kept + 1
        assert keeper.inbox.parked == 0
    finally:
        await keeper.stop()


async def test_an_operators_republish_goes_out_again_in_order_through_the_relay(
        js: JetStreamContext, database_url: str,  # noqa: F811
        ledger: tuple[Ledger, bus.OutboxRelay]) -> None:
    """Within the duplicate window the broker drops what it still holds; a stream made
    afresh by an operator (a cluster rebuilt) gets what is asked for again, in order."""
    upstream, relay = ledger
    incident = open_incident(upstream, "w-1")
    grow(upstream, incident, 3)
    await eventually(lambda: relay.position == 4)
    before = await ids_in_stream(js)
    assert relay.republish(0) == (0, 4)
    await eventually(lambda: relay._refill is None)
    assert await ids_in_stream(js) == before  # the broker still had them all

    await js.delete_stream(STREAM)
    await bus.ensure_stream(js, "ledger")  # empty, and no consumer says what it needs
    assert relay.republish(2) == (2, 4)
    await eventually(lambda: relay._refill is None)
    assert await ids_in_stream(js) == [f"{incident.id}/3", f"{incident.id}/4"]


async def test_a_purged_stream_is_refilled_once_the_broker_forgets_the_message_ids(
        js: JetStreamContext, database_url: str) -> None:  # noqa: F811
    """A purge keeps the consumers' durables and the broker's memory of message ids: the
    relay notices the stream holds fewer messages than it stored, and republishes what
    the consumers had not taken once a republish is no longer dropped as a duplicate."""
    upstream = Ledger(database_url)
    window = 0.5
    await bus.ensure_stream(js, "ledger", duplicate_window=window)
    relay = bus.OutboxRelay(upstream, js, "ledger", duplicate_window=window)
    relay_task = asyncio.create_task(relay.run())
    keeper = Keeper(js, database_url, max_attempts=1000)
    keeper.start()
    try:
        taken = open_incident(upstream, "w-1")
        await keeper.until_complete(taken)
        pending = open_incident(upstream, "w-2")
        grow(upstream, pending, 1)
        keeper.poisoned.add(str(pending.id))  # in the stream, not yet in the keeper
        await eventually(lambda: relay.position == 3)
        await js.purge_stream(STREAM)
        keeper.poisoned.clear()
        await keeper.until_complete(taken, pending, timeout=20)  # each event once
        assert relay.refills == 1
        assert keeper.inbox.parked == 0
    finally:
        relay.stopping.set()
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await keeper.stop()
        upstream.close()


async def test_a_stream_lost_while_its_service_was_down_is_refilled_when_it_starts(
        js: JetStreamContext, database_url: str) -> None:  # noqa: F811
    """The whole service down, its stream lost meanwhile (a NATS volume lost): at start it
    recreates the stream empty, sees that is not what it filled, and refills what the
    consumer (down too) had not taken, once the consumer says so."""
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    relay = bus.OutboxRelay(upstream, js, "ledger")
    relay_task = asyncio.create_task(relay.run())
    first = Keeper(js, database_url)
    first.start()
    incident = open_incident(upstream, "w-1")
    await first.until_complete(incident)
    await eventually(lambda: first.inbox._saved_taken >= 1, 5)
    await first.stop()
    grow(upstream, incident, 2)
    await eventually(lambda: relay.position == 3)
    relay.stopping.set()
    relay_task.cancel()
    await asyncio.gather(relay_task, return_exceptions=True)

    await js.delete_stream(STREAM)
    await bus.ensure_stream(js, "ledger")  # as the service's start does
    again = bus.OutboxRelay(upstream, js, "ledger")
    again_task = asyncio.create_task(again.run())
    second = Keeper(js, database_url)
    second.start()
    try:
        await second.until_complete(incident, timeout=20)
        assert await ids_in_stream(js) == [f"{incident.id}/2", f"{incident.id}/3"]
    finally:
        again.stopping.set()
        again_task.cancel()
        await asyncio.gather(again_task, return_exceptions=True)
        await second.stop()
        upstream.close()
