"""The outbox relay: publishes the service's events to its stream, and refills it.

Events go out in notification order; the stream is refilled from the store when it was
lost or a consumer lost what it held.

Only what JetStream acknowledged counts as relayed. The stream says (in its metadata) from
which outbox position it holds everything; each consumer says, when it creates its durable,
up to which position it took everything. Every few seconds the relay looks: a stream gone
is recreated, a stream that is not the one it published to is taken as holding only what
comes next, and when a consumer took less than the stream holds, the relay goes back to
that position and republishes from there, with the same message ids (the broker drops what
it still has; consumers recognise the rest by event identity).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from eventsourcing.persistence import IntegrityError, Notification, Tracking
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from opentelemetry import propagate, trace

from lifeline.bus import streams
from lifeline.bus.subjects import (
    POSITION_HEADER,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    TYPE_HEADER,
    describe,
    subject_for,
)
from lifeline.events import ProtoAggregate
from lifeline.follow import LogFollower, retry_forever
from lifeline.identity.nats import stream_name
from lifeline.store import ServiceApplication

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

#: How often at most the relay records the position JetStream confirmed.
SAVE_POSITION_SECONDS = 0.2
#: How often the relay looks at its stream and the consumers on it.
STREAM_CHECK_SECONDS = 1.0


class OutboxRelay(LogFollower):
    """Publishes the application's events to its stream, in notification order."""

    def __init__(self, app: ServiceApplication, js: JetStreamContext, service: str, *,
                 replicas: int = 1,
                 duplicate_window: float = streams.DUPLICATE_WINDOW_SECONDS) -> None:
        super().__init__(app, f"{service} outbox relay")
        self.js, self.service, self.stream = js, service, stream_name(service)
        self.replicas, self.duplicate_window = replicas, duplicate_window
        self._confirmed = self._saved = 0
        self._saving: asyncio.Task[None] | None = None
        self._look_now = asyncio.Event()
        #: The stream this process publishes to (its creation time) and what it holds.
        self._created: datetime | None = None
        self._holds_from = 0
        #: A refill under way: republishing from low (exclusive) up to high.
        self._refill: tuple[int, int] | None = None
        self._back_to: int | None = None  # where the next step goes back to
        self._sending = 0  # the last position of the batch going out
        self.refills = 0  # how many times this relay went back (tests, logs)
        #: Per consumer, the position up to which it was seen to have taken everything.
        self._took: dict[str, int] = {}
        #: How many messages the stream should hold (as first seen, plus each new one it
        #: stored since); fewer means some were removed (a purge), noticed at that time.
        self._stored = 0
        self._shortened: float | None = None

    async def load_position(self) -> int:
        return await asyncio.to_thread(self.app.process_recorder.max_tracking_id, "outbox") or 0

    # ---- going back ----

    def republish(self, after: int) -> tuple[int, int]:
        """Republish every event after this position (the next step goes back there);
        the range it will cover (nothing when after is not below what it published)."""
        upto = self._upto()
        if after >= upto:
            return after, upto
        low = after if self._refill is None else min(after, self._refill[0])
        self._refill = (low, max(upto, self._refill[1] if self._refill else 0))
        self._back_to = after if self._back_to is None else min(self._back_to, after)
        self.refills += 1
        self._wake.set()
        return after, upto

    def _upto(self) -> int:
        """The furthest position this relay has published, or is publishing: a stream lost
        while a batch goes out may hold its end and not its beginning."""
        return max(self.position or 0, self._refill[1] if self._refill else 0, self._sending)

    async def run(self) -> None:
        """Relay, and beside it look at the stream every STREAM_CHECK_SECONDS (at once
        after a failed publish), off the path of the events."""
        watch = asyncio.create_task(retry_forever(f"{self.name} (stream check)", self._watch,
                                                  self.stopping))
        try:
            await super().run()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _watch(self) -> None:
        if self._created is not None:  # after the relay's own first look
            await self.check()
        self._look_now.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._look_now.wait(), STREAM_CHECK_SECONDS)

    async def _step(self) -> None:
        if self.position is None:
            # The first look before the first publish: what the stream holds decides
            # whether it is one this relay filled.
            self.position = await self.load_position()
        if self._created is None:
            await self.check()
        if self._back_to is not None:
            self.position, self._back_to = min(self.position, self._back_to), None
        try:
            await super()._step()
        except Exception:
            self._look_now.set()  # the stream may be gone: look before the next try
            raise
        if self._refill is not None and self._back_to is None and \
                (self.position or 0) >= self._refill[1]:
            low, high = self._refill
            self._refill = None
            await self._say_holds_from(min(low, self._holds_from))
            self._save_later()  # nothing was saved while it went back
            log.info("%s: republished events %d..%d to %s", self.name, low + 1, high,
                     self.stream)

    async def check(self) -> None:
        """Look at the stream and its consumers; recreate, take as new, or go back."""
        stored = self._stored  # what the stream holds by now, whatever goes out meanwhile
        try:
            info: api.StreamInfo | None = await self.js.stream_info(self.stream)
        except NotFoundError:
            info = None
        upto = self._upto()
        if info is None:
            log.warning("%s: stream %s is gone; recreating it and republishing what its "
                        "consumers had not taken", self.name, self.stream)
            info = await streams.ensure_stream(self.js, self.service, self.replicas,
                                               self.duplicate_window, holds_from=upto)
            self._lost(info, upto)
        elif self._created is None:  # the first look of this process
            said = streams.holds_from(info)
            if said is None:  # a stream that never said: one it filled, unless it is empty
                said = upto if not info.state.messages else 0
                info = await streams.say_holds_from(self.js, info, said)
            self._created, self._holds_from = info.created, said
            self._stored = info.state.messages
        elif info.created != self._created:
            log.warning("%s: stream %s was recreated; republishing what its consumers had "
                        "not taken", self.name, self.stream)
            info = await streams.say_holds_from(self.js, info, upto)
            self._lost(info, upto)
        elif info.state.messages < stored:
            self._stored -= stored - info.state.messages
            if self._shortened is None:
                log.warning("%s: stream %s holds fewer messages than it stored (purged?); "
                            "republishing what its consumers had not taken once its "
                            "duplicate window has passed", self.name, self.stream)
                self._shortened = time.monotonic() + (info.config.duplicate_window or 0)
        if self._shortened is not None and time.monotonic() >= self._shortened:
            self._shortened = None
            await self._refill_purged()
        await self._serve_consumers()

    async def _refill_purged(self) -> None:
        """A purge left the durables in place, with what they said when they were made:
        republish from the oldest of that (or of what they were seen to take), or from the
        start when no inbox reads the stream."""
        said = [max(taken, self._took.get(c.name, 0))
                for c in await self.js.consumers_info(self.stream)
                if (taken := streams.taken(c)) is not None]
        self.republish(min(said, default=0))

    def _lost(self, info: api.StreamInfo, upto: int) -> None:
        """The stream holds nothing this relay published before upto."""
        self._created, self._holds_from = info.created, upto
        self._stored, self._shortened = info.state.messages, None
        if self._refill is not None:  # a refill cut short starts over
            self.republish(self._refill[0])

    async def _serve_consumers(self) -> None:
        # In the stream before the consumers are asked (a batch still going out is not:
        # a consumer with nothing pending has not taken what the stream does not hold yet).
        published, stored = self.position or 0, self._stored
        consumers = await self.js.consumers_info(self.stream)
        # A consumer with nothing pending in a stream purged just before it was asked took
        # nothing: only a stream still whole after the answer vouches for it.
        whole = await self._still_holds(stored)
        floor = self._holds_from if self._refill is None else self._refill[0]
        for consumer in consumers:
            said = streams.taken(consumer)
            if said is None:
                continue  # not an inbox (a notified party's own consumer)
            taken = max(said, self._took.get(consumer.name, 0))
            if taken < floor:
                log.warning("%s: consumer %s took events up to %d, %s holds them from %d "
                            "on: republishing", self.name, consumer.name, taken,
                            self.stream, floor + 1)
                self.republish(taken)
                floor = taken
            elif whole and self._refill is None and self._shortened is None and not (
                    consumer.num_pending or consumer.num_ack_pending or
                    consumer.num_redelivered):
                # Nothing left for it in a stream that holds all it needs: it took every
                # event it wants up to here (its own floor only counts the ones it wants).
                self._took[consumer.name] = published

    async def _still_holds(self, stored: int) -> bool:
        """Whether the stream this relay filled still holds the `stored` messages."""
        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            return False
        return info.created == self._created and info.state.messages >= stored

    async def _say_holds_from(self, position: int) -> None:
        self._holds_from = position
        with contextlib.suppress(NotFoundError):  # gone again: the next check sees it
            info = await self.js.stream_info(self.stream)
            if info.created == self._created:
                await streams.say_holds_from(self.js, info, position)

    # ---- publishing ----

    async def handle(self, notifications: Sequence[Notification]) -> None:
        self._sending = notifications[-1].id
        acks = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            if not isinstance(event, ProtoAggregate.Recorded):
                continue  # internal records (idempotency keys) stay in the service
            aggregate_class = _aggregate_class(event)
            wrapper = event.message(aggregate_class.EVENT_TYPE)
            if not aggregate_class.relayed(wrapper):
                continue
            subject = subject_for(self.service, wrapper, aggregate_class)
            headers = {
                "Nats-Msg-Id": f"{event.originator_id}/{event.originator_version}",
                TYPE_HEADER: wrapper.DESCRIPTOR.full_name,
                SCHEMA_HEADER: SCHEMA_VERSION,
                POSITION_HEADER: str(notification.id),
                **event.trace,
            }
            with tracer.start_as_current_span(
                f"publish {subject}", context=propagate.extract(event.trace),
                kind=trace.SpanKind.PRODUCER,
            ):
                acks.append(await self.js.publish_async(
                    subject, wrapper.SerializeToString(), headers=headers))
        # Only what JetStream confirmed counts as relayed. Every answer is taken, so that
        # a stream gone mid-batch leaves no failed acknowledgement unretrieved.
        if acks:
            answers = await asyncio.wait_for(asyncio.gather(*acks, return_exceptions=True), 10)
            failed = next((a for a in answers if isinstance(a, BaseException)), None)
            if failed is not None:
                raise failed
            self._stored += sum(1 for a in answers
                                if isinstance(a, api.PubAck) and not a.duplicate)
        self._confirmed = notifications[-1].id
        self._save_later()

    def _save_later(self) -> None:
        if self._refill is None and (self._saving is None or self._saving.done()):
            self._saving = asyncio.create_task(self._save_soon())

    async def _save_soon(self) -> None:
        """Record the confirmed position at most every SAVE_POSITION_SECONDS, off the path
        of the next event, until the last one confirmed is saved (a batch confirmed while a
        save was under way is saved by the next round): a relay restarted before it
        republishes those few, which JetStream's duplicate window and the consumers' event
        identity both absorb."""
        while self._refill is None and self._saved != self._confirmed:
            await asyncio.sleep(SAVE_POSITION_SECONDS)
            if self._refill is not None:
                return  # the refill's end saves
            confirmed = self._confirmed
            try:
                await asyncio.to_thread(self._save_position, confirmed)
            except Exception as error:  # the next batch saves it; a restart republishes a few
                if not self.stopping.is_set():
                    log.warning("%s: position not saved: %s", self.name, describe(error))
                return
            self._saved = confirmed

    async def flush(self) -> None:
        """Record the confirmed position now (a graceful stop)."""
        if self._saving is not None:
            self._saving.cancel()
        if self._confirmed and self._refill is None:
            await asyncio.to_thread(self._save_position, self._confirmed)
            self._saved = self._confirmed

    def _save_position(self, notification_id: int) -> None:
        # Already there when a relay re-sent what an earlier run had confirmed.
        with contextlib.suppress(IntegrityError):
            self.app.process_recorder.insert_tracking(Tracking("outbox", notification_id))


_AGGREGATE_CLASSES: dict[str, type[ProtoAggregate]] = {}


def _aggregate_class(event: ProtoAggregate.Recorded) -> type[ProtoAggregate]:
    qualname = type(event).__qualname__.rsplit(".", 1)[0]
    key = f"{type(event).__module__}.{qualname}"
    cls = _AGGREGATE_CLASSES.get(key)
    if cls is None:
        from eventsourcing.utils import resolve_topic

        cls = resolve_topic(f"{type(event).__module__}:{qualname}")
        _AGGREGATE_CLASSES[key] = cls
    return cls
