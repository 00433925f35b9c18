"""The inbox: a durable consumer applying each upstream aggregate's events once, in order.

What a handler does with a message is written in the same transaction as the message's
event identity (upstream aggregate id and version), never its stream position, so a
redelivery, a republish after the duplicate window or a recreated stream changes nothing.
The decisions about order are `ordering`'s; this module talks to the broker and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ServiceUnavailableError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from lifeline.bus import streams
from lifeline.bus.ordering import (
    EARLY_WAIT_SECONDS,
    LANES,
    Delivery,
    Ordering,
    TakenUpTo,
    Verdict,
    lane_of,
    verdict,
)
from lifeline.bus.parked import ParkingDesk
from lifeline.bus.subjects import TYPE_HEADER, describe, identity_of, position_of
from lifeline.common.v1 import parking_pb2
from lifeline.events import Cause
from lifeline.follow import retry_forever
from lifeline.identity.nats import stream_name
from lifeline.parking import parking_id
from lifeline.store import ServiceApplication, Taking, retry_conflicts

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Handler = Callable[[str, Message, Taking], Awaitable[None]]

#: JetStream redelivers a message nobody acknowledged within this long. Short, so that the
#: messages a killed consumer held reach its replacement within seconds; a live consumer
#: keeps what it holds (a running handler, an early message waiting for an earlier one)
#: with in-progress acks every HEARTBEAT_SECONDS.
ACK_WAIT_SECONDS = 3.0
HEARTBEAT_SECONDS = 1.0
#: A message whose handler failed this often (in this process) is parked.
MAX_ATTEMPTS = 5
#: How long a consumer off the dispatch path (review's histories, monitor's warning
#: outcomes: kept and counted, acted on by nobody) lets a fetched batch wait for the rest of
#: its burst: a declaration publishes a dozen events at once, and handling them while
#: dispatch and resources still act on the same burst delayed the unit assignment.
OFF_PATH_LINGER_SECONDS = 0.25
class Inbox:
    """A durable pull consumer applying each upstream aggregate's events in version order,
    exactly once, recognised by their identity.

    For each message, the consumer's store says the highest version it took of that
    aggregate (`ServiceApplication.inbox_position`): a version it took is a repeat (acked);
    the next one is applied, its effects written with its identity; a later one is early
    and waits, unacknowledged, until the one before it was taken (then it is applied at
    once) or for EARLY_WAIT_SECONDS (then it is parked). The consumer's filter covers
    every event subject of the aggregates it listens to, so versions are contiguous from
    its view; events it does not handle are tracked all the same. A message that fails
    MAX_ATTEMPTS times is parked, and its aggregate's later messages are parked behind it.

    The common case costs no extra round trip: the inbox remembers the last version it
    took of each aggregate and which aggregates have nothing parked, and asks the store
    only about a version that is not simply the next one. Events it only tracks are not
    written one transaction each: their rows go with the next handled event's write, or
    all together at the end of the fetched batch, and are acknowledged only then. What it
    remembers assumes it is the one consumer of these aggregates: a second instance on
    the same durable stays exactly-once (the tracking rows' key refuses a second writer)
    but could see a parking late.

    When its durable is created (the first time, or again after it vanished with a lost
    stream), it says up to which outbox position it took everything (`TakenUpTo`, kept in
    its store), so that the upstream's relay republishes what it still needs.
    """

    def __init__(self, app: ServiceApplication, js: JetStreamContext, *, consumer: str,
                 upstream: str, subjects: Sequence[str],
                 message_types: dict[str, type[Message]], handle: Handler,
                 handles: Collection[str] | None = None, batch: int = 64,
                 max_attempts: int = MAX_ATTEMPTS, early_wait: float = EARLY_WAIT_SECONDS,
                 ack_wait: float = ACK_WAIT_SECONDS, linger: float = 0.0,
                 lanes: int = LANES,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.app, self.js = app, js
        self.consumer, self.upstream, self.subjects = consumer, upstream, list(subjects)
        self.message_types, self.handle, self.batch = message_types, handle, batch
        #: The exact subjects the handler is called for; None for every one it receives.
        self.handles = None if handles is None else frozenset(handles)
        self.max_attempts, self.early_wait, self.ack_wait = max_attempts, early_wait, ack_wait
        #: How long a fetched batch waits for the rest of its burst before it is handled
        #: (0: at once). For a consumer off the dispatch path: its work then comes after
        #: the burst's dispatch, not in its way, and in one batch.
        self.linger = linger
        #: How many upstream aggregates of a fetched batch are taken side by side.
        self.lanes = lanes
        self.now = now
        self.stopping = asyncio.Event()
        self._sub: Any = None
        self.processed = 0  # messages taken: applied, tracked, parked or found repeated
        self.parked = 0
        self.ordering = Ordering(early_wait)
        self.taken: TakenUpTo | None = None  # read from the store at the first subscribe
        self._saved_taken = 0
        self._saving_taken: asyncio.Task[None] | None = None
        #: When the upstream stream was first seen holding everything after what the
        #: durable said.
        self._refilled_at: float | None = None
        self._holding: dict[int, Msg] = {}  # stream sequence -> message not yet settled
        self.desk = ParkingDesk(app, consumer, upstream, now, self._reapply)
        self._deferred: dict[tuple[str, int], Delivery] = {}  # tracked, not yet written
        self._started = False  # whether this process has subscribed yet

    async def run(self) -> None:
        beat = asyncio.create_task(self._heartbeat())
        try:
            await retry_forever(f"consumer {self.consumer}", self._step, self.stopping)
        finally:
            beat.cancel()
            if self._saving_taken is not None:
                self._saving_taken.cancel()
            await asyncio.gather(beat, *[t for t in (self._saving_taken,) if t],
                                 return_exceptions=True)

    @property
    def _taken_name(self) -> str:
        return f"taken:{self.consumer}"  # its tracking rows: the outbox position taken

    async def _subscribe(self) -> Any:
        if self.taken is None:
            recorder = self.app.process_recorder
            saved: int | None = await asyncio.to_thread(recorder.max_tracking_id,
                                                        self._taken_name)
            self._saved_taken = saved or 0
            self.taken = TakenUpTo(self._saved_taken)
        config = api.ConsumerConfig(
            durable_name=self.consumer, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, filter_subjects=self.subjects,
            ack_wait=self.ack_wait, max_ack_pending=1024,
            metadata={streams.TAKEN: str(self.taken.say())},
        )
        stream = stream_name(self.upstream)
        try:
            info = await self.js.stream_info(stream)
        except NotFoundError:
            raise RuntimeError(f"stream {stream} does not exist (yet): lifeline-"
                               f"{self.upstream} creates it when it starts, and again "
                               "within seconds when it is lost") from None
        if not self._started:
            self._started = True
            await self._take_over(stream, config)
        # Creates it, finds it as it was, or updates its filter, ack_wait and what it took.
        await self.js.add_consumer(stream, config)
        self._refilled_at = None
        self._holds_after(info)
        return await self.js.pull_subscribe_bind(durable=self.consumer, stream=stream)

    async def _take_over(self, stream: str, config: api.ConsumerConfig) -> None:
        """A process starting as this consumer is the replacement of one that died: what
        the dead one held would come back only after ack_wait. Recreate the durable at
        its acknowledgement floor instead, so those messages come now; any acknowledged
        after the floor come again and are recognised as repeats by their identity."""
        try:
            info = await self.js.consumer_info(stream, self.consumer)
        except NotFoundError:
            return
        if not info.num_ack_pending:
            return
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        log.info("%s: taking over %d messages held by a previous instance, from stream "
                 "sequence %d", self.consumer, info.num_ack_pending, floor + 1)
        await self.js.delete_consumer(stream, self.consumer)
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = floor + 1

    async def _step(self) -> None:
        if self._sub is None:
            self._sub = await self._subscribe()
        try:
            # Short pulls without idle heartbeats: nats-py re-sends the remaining expiry with
            # the same heartbeat, which the server refuses once the expiry gets short; a 1 s
            # pull bounds any stall after a broker restart just as well.
            fetched_at = time.monotonic()
            messages = await self._sub.fetch(self.batch, timeout=1.0)
        except TimeoutError:
            messages = []
        except (NotFoundError, ServiceUnavailableError):
            self._sub = None  # the consumer is gone (a fresh broker, a lost stream): again
            self._forget()
            raise
        caught_up = not messages or not messages[-1].metadata.num_pending
        if caught_up and self._refilled_at is not None and self._refilled_at < fetched_at:
            assert self.taken is not None
            self.taken.caught_up()
        try:
            self._hold(messages)
            if messages and self.linger and len(messages) < self.batch:
                messages += await self._gather(self.batch - len(messages))
            await self._offer_side_by_side(messages)
            await self._expire_early()
            await self._write_deferred()
        except Exception:
            # The store or the broker failed us: hand back all we hold; it comes again,
            # and identity makes whatever was done before the failure a repeat.
            for msg in list(self._holding.values()):
                with contextlib.suppress(Exception):
                    await msg.nak(delay=0.5)
            self._forget()
            raise

    async def _offer_side_by_side(self, messages: Sequence[Msg]) -> None:
        """Each upstream aggregate's messages in order; up to `lanes` aggregates side by
        side, so that their writes share transactions (`lifeline.groupcommit`)."""
        lanes: dict[str, list[Msg]] = {}
        for msg in messages:
            lanes.setdefault(lane_of(msg.headers), []).append(msg)
        if self.lanes == 1 or len(lanes) == 1:
            for msg in messages:
                await self._offer(msg)
            return
        room = asyncio.Semaphore(self.lanes)

        async def lane(queued: list[Msg]) -> None:
            async with room:
                for msg in queued:
                    await self._offer(msg)

        async with asyncio.TaskGroup() as group:  # one failing cancels the others
            for queued in lanes.values():
                group.create_task(lane(queued))

    def _hold(self, messages: Sequence[Msg]) -> None:
        assert self.taken is not None
        for msg in messages:
            sequence = msg.metadata.sequence.stream
            self._holding[sequence] = msg
            self.taken.received(sequence, position_of(msg))

    async def _gather(self, room: int) -> list[Msg]:
        """Wait `linger` seconds, then take what arrived meanwhile (at most room)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self.linger)
        try:
            more = await self._sub.fetch(room, timeout=0.05)
        except TimeoutError:
            return []
        self._hold(more)
        return more

    def _forget(self) -> None:
        self._holding.clear()
        if self.taken is not None:
            self.taken.released()
        self.ordering.forget()
        self._deferred.clear()

    async def _position(self, delivery: Delivery) -> tuple[int, bool]:
        """The last version taken of the delivery's aggregate, and whether this one was."""
        hint = self.ordering.hint(delivery)
        if hint is not None:
            return hint, False
        last, seen, parked = await asyncio.to_thread(
            self.app.inbox_state, delivery.key, delivery.version,
            parking_id(self.consumer, delivery.aggregate_id))
        last = self.ordering.answered(delivery, last, parked)
        return last, seen or delivery.ident in self._deferred

    async def _write_deferred(self) -> None:
        """Write the tracking rows still deferred, in one transaction; then acknowledge."""
        if self._deferred:
            await asyncio.to_thread(self.app.track,
                                    [d.tracking for d in self._deferred.values()])
            await self._settle_deferred()

    async def _settle_deferred(self, written: dict[tuple[str, int], Delivery] | None = None
                               ) -> None:
        """Acknowledge deferred deliveries whose tracking rows were written (all, or those
        `written`), each once: another lane's write may have taken the same rows."""
        for ident in list(self._deferred if written is None else written):
            delivery = self._deferred.pop(ident, None)
            if delivery is not None:
                await self._settle(delivery.msg)
                self.processed += 1

    async def _heartbeat(self) -> None:
        """Tell JetStream we still work on what we hold, so a short ack_wait redelivers
        only what a dead consumer held; and keep in the store how far we took the
        upstream's outbox."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), HEARTBEAT_SECONDS)
            for msg in list(self._holding.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()
            with contextlib.suppress(Exception):  # the broker is down: look next time
                await self._look_for_refill()
            if self._saving_taken is None or self._saving_taken.done():
                # Beside the heartbeat: a store that hangs must not hold the in-progress acks.
                self._saving_taken = asyncio.create_task(self._save_taken())

    async def _look_for_refill(self) -> None:
        """Until the upstream stream holds everything after what the durable said, look."""
        if self._refilled_at is None and self.taken is not None and self.taken.said is not None:
            self._holds_after(await self.js.stream_info(stream_name(self.upstream)))

    def _holds_after(self, info: api.StreamInfo) -> None:
        """Note when the stream first holds everything after what the durable said; a
        fetch after that which finds nothing more behind it lifts the floor again. A
        stream that does not say is taken to hold everything (its relay says it before
        it publishes)."""
        said = self.taken.said if self.taken is not None else None
        holds_from = streams.holds_from(info) or 0
        if said is not None and holds_from <= said:
            self._refilled_at = time.monotonic()

    async def _save_taken(self) -> None:
        floor = self.taken.floor if self.taken is not None else 0
        if floor <= self._saved_taken:
            return
        try:
            with contextlib.suppress(IntegrityError):
                await asyncio.to_thread(self.app.process_recorder.insert_tracking,
                                        Tracking(self._taken_name, floor))
            self._saved_taken = floor
        except Exception as error:  # the store is down: the next beat saves it
            log.debug("%s: position taken not saved: %s", self.consumer, describe(error))

    async def _settle(self, msg: Msg, *, delay: float | None = None) -> None:
        """Ack (delay None) or hand back after delay; either way we hold it no more."""
        sequence = msg.metadata.sequence.stream
        self._holding.pop(sequence, None)
        if delay is None:
            await msg.ack()
            if self.taken is not None:
                self.taken.settled(sequence)
        else:
            with contextlib.suppress(Exception):
                await msg.nak(delay=delay)

    # ---- one message ----

    async def _offer(self, msg: Msg) -> None:
        headers = msg.headers or {}
        if not msg.subject.startswith(f"lifeline.{self.upstream}."):
            # Only the upstream service may publish on its subjects; anything else in its
            # stream (a misconfigured stream, a forged message) is not its event.
            log.warning("%s: ignored a message on %s, which is not lifeline-%s's",
                        self.consumer, msg.subject[:80], self.upstream)
            await self._settle(msg)
            return
        message_type = self.message_types.get(headers.get(TYPE_HEADER, ""))
        identity = identity_of(msg, message_type)
        if identity is None:
            log.warning("%s: ignored a message on %s without an event identity",
                        self.consumer, msg.subject[:80])
            await self._settle(msg)
            return
        aggregate_id, version = identity
        handled = self.handles is None or msg.subject in self.handles
        await self._take(Delivery(msg, aggregate_id, version, f"{self.upstream}/{aggregate_id}",
                                  message_type, handled))

    async def _take(self, delivery: Delivery | None) -> None:
        """Take a delivery, then every early one of its aggregate that waited for it."""
        while delivery is not None:
            last, seen = await self._position(delivery)
            match verdict(delivery, last, seen):
                case Verdict.REPEAT:  # redelivered or republished
                    await self._settle(delivery.msg)
                    self.processed += 1
                case Verdict.EARLY:
                    if not self.ordering.wait(delivery):
                        await self._settle(delivery.msg, delay=1.0)
                    return
                case Verdict.STALE:
                    # Older than one already taken: only possible after a gap was parked;
                    # it goes behind that parking, never applied out of order.
                    await self._park(delivery, f"arrived after version {last} was taken", 0)
                case Verdict.NEXT:
                    if not await self._apply(delivery):
                        return  # handed back to be tried again; its followers keep waiting
            delivery = self.ordering.follower(delivery)

    async def _expire_early(self) -> None:
        """Park early events whose predecessor never came (lost with a deleted stream, or
        held somewhere for too long), oldest version first."""
        for delivery in self.ordering.expired():
            if not self.ordering.withdraw(delivery):
                continue  # taken meanwhile, after an earlier one was parked
            last, _ = await asyncio.to_thread(self.app.inbox_position, delivery.key,
                                              delivery.version)
            if delivery.version <= last + 1:
                await self._take(delivery)
                continue
            await self._park(delivery, f"gap: versions {last + 1}..{delivery.version - 1} "
                             f"did not arrive within {self.early_wait:g}s", 0)
            await self._take(self.ordering.follower(delivery))

    async def _apply(self, delivery: Delivery) -> bool:
        """Apply the next event of its aggregate; False when it is to be tried again."""
        try:
            held = await self._process(delivery)
        except Exception as error:
            attempts = self.ordering.failed(delivery)
            _, seen = await asyncio.to_thread(self.app.inbox_position, *delivery.ident)
            if seen:  # taken before, or by another instance meanwhile (our write conflicted)
                self.ordering.given_up(delivery)
                await self._settle(delivery.msg)
                self.processed += 1
                return True
            if attempts >= self.max_attempts:
                self.ordering.given_up(delivery)
                await self._park(delivery, describe(error), attempts)
                return True
            log.warning("%s: %s version %d failed (attempt %d of %d): %s", self.consumer,
                        delivery.aggregate_id, delivery.version, attempts, self.max_attempts,
                        describe(error))
            await self._settle(delivery.msg, delay=min(0.1 * 2 ** attempts, 2.0))
            return False
        self.ordering.taken(delivery)
        if held is None:
            return True  # deferred: acknowledged once its tracking row is written
        await self._settle(delivery.msg)
        self.processed += 1
        self.parked += held
        return True

    async def _process(self, delivery: Delivery) -> bool | None:
        """Apply (or only track) the next event; True when it was parked behind others,
        None when its tracking row is deferred."""
        if delivery.message_type is None or not delivery.handled:
            # Not for this handler (an event of the aggregate it does not react to, or a
            # type newer than it knows): tracked, so the versions stay contiguous.
            self._deferred[delivery.ident] = delivery
            return None
        # Behind a parked version before anything else: even one that would fail waits.
        if not self.ordering.nothing_parked(delivery.key):
            if await asyncio.to_thread(retry_conflicts,
                                       lambda: self.desk.hold_if_parked(delivery)):
                return True
            self.ordering.unparked(delivery.key)
        wrapper = delivery.message_type.FromString(delivery.msg.data)
        riding = dict(self._deferred)  # another lane may defer more meanwhile
        taking = Taking(delivery.tracking, [d.tracking for d in riding.values()],
                        first=delivery.first)
        await self._handle(delivery.msg.subject, wrapper, delivery.msg.headers or {}, taking)
        if taking.written:
            await self._settle_deferred(riding)
        return False

    async def _handle(self, subject: str, wrapper: Message, headers: dict[str, str],
                      taking: Taking) -> None:
        token = otel_context.attach(propagate.extract(headers))
        try:
            with tracer.start_as_current_span(f"consume {subject}",
                                              kind=trace.SpanKind.CONSUMER):
                await self.handle(subject, wrapper, taking)
        finally:
            otel_context.detach(token)

    # ---- parking ----

    async def _reapply(self, head: parking_pb2.ParkedMessage, taking: Taking) -> None:
        message_type = self.message_types.get(head.message_type)
        if message_type is not None and (self.handles is None or head.subject in self.handles):
            await self._handle(head.subject, message_type.FromString(head.data),
                               dict(head.headers), taking)

    async def _park(self, delivery: Delivery, error: str, attempts: int) -> None:
        self.ordering.parked(delivery.key)
        await self.desk.park(delivery, error, attempts)
        log.error("%s: parked %s version %d (%s): %s", self.consumer, delivery.aggregate_id,
                  delivery.version, delivery.msg.subject, error)
        await self._settle(delivery.msg)
        self.processed += 1
        self.parked += 1

    async def retry_parked(self, ident: UUID, cause: Cause) -> int:
        """Apply a parking's waiting messages again (see ParkingDesk.retry)."""
        return await self.desk.retry(ident, cause)
