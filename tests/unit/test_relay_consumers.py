"""What the relay concludes from its consumers' state: a consumer it saw with nothing
pending took everything the stream held then, and nothing of a batch still going out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

from lifeline.bus import streams
from lifeline.bus.relay import OutboxRelay
from nats.js import api


class App:
    """What a relay asks of its application before it reads anything."""

    def on_recorded(self, listener: Callable[..., None]) -> None:
        pass


class Broker:
    """One consumer on the relay's stream, as JetStream describes it."""

    def __init__(self, took: int) -> None:
        self.pending = 0
        self.took = took
        self.created = datetime.now(UTC)
        self.messages = 0
        self.purge_when_asked = False

    def relay(self, position: int) -> OutboxRelay:
        relay = OutboxRelay(App(), self, "ledger")  # type: ignore[arg-type]
        relay.position, relay._created = position, self.created
        relay._stored = self.messages = position
        return relay

    async def stream_info(self, stream: str) -> SimpleNamespace:
        return SimpleNamespace(created=self.created,
                               state=SimpleNamespace(messages=self.messages))

    async def consumers_info(self, stream: str) -> list[api.ConsumerInfo]:
        if self.purge_when_asked:  # the consumer's pending messages go with the stream's
            self.messages = self.pending = 0
        config = api.ConsumerConfig(durable_name="keeper",
                                    metadata={streams.TAKEN: str(self.took)})
        return [api.ConsumerInfo(name="keeper", stream_name=stream, config=config,
                                 created=datetime.now(UTC), num_pending=self.pending,
                                 num_ack_pending=0, num_redelivered=0)]


async def test_a_consumer_idle_while_a_batch_goes_out_is_refilled_that_batch() -> None:
    broker = Broker(took=3)
    relay = broker.relay(3)
    relay._sending = 6  # 4..6 published, not yet stored by the stream
    await relay._serve_consumers()  # the consumer has nothing pending: it took 1..3

    # The stream is lost; the consumer's new durable says it took up to 3; the new stream
    # holds from 6 on: 4..6 must go out again.
    relay.position, relay._holds_from = 6, 6
    await relay._serve_consumers()
    assert relay._refill == (3, 6)


async def test_a_consumer_seen_idle_is_not_refilled_what_it_took() -> None:
    broker = Broker(took=0)
    relay = broker.relay(6)
    await relay._serve_consumers()  # nothing pending with 1..6 stored: it took them all

    relay._holds_from = 6  # lost and recreated; its durable (said 0) is not remade yet
    await relay._serve_consumers()
    assert relay._refill is None

    broker.pending = 4  # pending work does not lower what it was seen to take
    await relay._serve_consumers()
    assert relay._refill is None


async def test_a_consumer_asked_while_its_stream_is_purged_took_nothing_it_held() -> None:
    broker = Broker(took=0)
    relay = broker.relay(3)
    broker.pending = 2  # 2..3 not taken yet
    broker.purge_when_asked = True  # the purge lands after the relay's look at the stream
    await relay._serve_consumers()
    assert relay._took.get("keeper", 0) == 0

    await relay._refill_purged()  # the next look sees the purge: 1..3 go out again
    assert relay._refill == (0, 3)
