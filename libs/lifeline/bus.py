"""NATS JetStream: one stream per service, an outbox relay out, durable consumers in.

Outbox: the relay follows the application's notification log in order and publishes each
event with `Nats-Msg-Id` = the event's identity; only after JetStream acknowledged a batch
does it record how far it got. Nothing writes to the store and the broker in one breath.

Inbox: durable pull consumers; what a handler does with a message is written in the same
transaction as the message's event identity (upstream aggregate id and version), never its
stream position, so a redelivery, a republish after the duplicate window or a recreated
stream changes nothing. One aggregate's events are applied in version order; a message that
keeps failing is parked (lifeline.parking) while everything else flows on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import nats
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ServiceUnavailableError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from lifeline.common.v1 import parking_pb2
from lifeline.errors import RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, meta_of
from lifeline.follow import LogFollower, retry_forever
from lifeline.identity.nats import inbox_prefix, stream_name
from lifeline.parking import Parking, parking_id
from lifeline.store import ServiceApplication, retry_conflicts

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

TYPE_HEADER = "Lifeline-Type"
SCHEMA_HEADER = "Lifeline-Schema"
SCHEMA_VERSION = "v1"


def subject_for(service: str, wrapper: Message, aggregate_class: Any = None) -> str:
    """lifeline.<service>.<aggregate>.<event>, e.g. lifeline.dispatch.incident.declared; an
    aggregate class with a `subject_key(wrapper)` puts that token before the event (monitor's
    notifications: lifeline.monitor.notification.<party>.notified), so a subscriber can be
    permitted exactly its own."""
    aggregate = _snake(wrapper.DESCRIPTOR.name.removesuffix("Event"))
    key = getattr(aggregate_class, "subject_key", None)
    middle = f"{aggregate}.{key(wrapper)}" if key is not None else aggregate
    return f"lifeline.{service}.{middle}.{event_of(wrapper)[0]}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


async def connect(url: str, name: str, *, user: str = "", password: str = "",
                  ca_file: str = "") -> NATS:
    """Connect as one NATS user (each service has its own), over TLS when a CA is given."""

    async def on_error(error: Exception) -> None:
        log.warning("NATS: %s", error)

    options: dict[str, Any] = {}
    if user:
        options.update(user=user, password=password, inbox_prefix=inbox_prefix(user))
    if ca_file:
        options["tls"] = ssl.create_default_context(cafile=ca_file)
    return await nats.connect(servers=[url], name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.25, connect_timeout=2,
                              error_cb=on_error, **options)


#: JetStream's memory of Nats-Msg-Ids; consumers do not depend on it (they recognise events
#: by identity), it only saves them work.
DUPLICATE_WINDOW_SECONDS = 120.0


async def ensure_stream(js: JetStreamContext, service: str, replicas: int = 1,
                        duplicate_window: float = DUPLICATE_WINDOW_SECONDS) -> None:
    config = api.StreamConfig(name=stream_name(service), subjects=[f"lifeline.{service}.>"],
                              storage=api.StorageType.FILE, duplicate_window=duplicate_window,
                              num_replicas=replicas)
    try:
        await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


#: How often at most the relay records the position JetStream confirmed.
SAVE_POSITION_SECONDS = 0.2


class OutboxRelay(LogFollower):
    """Publishes the application's events to its stream, in notification order."""

    def __init__(self, app: ServiceApplication, js: JetStreamContext, service: str) -> None:
        super().__init__(app, f"{service} outbox relay")
        self.js, self.service = js, service
        self._confirmed = 0
        self._saving: asyncio.Task[None] | None = None

    async def load_position(self) -> int:
        return await asyncio.to_thread(self.app.process_recorder.max_tracking_id, "outbox") or 0

    async def handle(self, notifications: Sequence[Notification]) -> None:
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
                **event.trace,
            }
            with tracer.start_as_current_span(
                f"publish {subject}", context=propagate.extract(event.trace),
                kind=trace.SpanKind.PRODUCER,
            ):
                acks.append(await self.js.publish_async(
                    subject, wrapper.SerializeToString(), headers=headers))
        # Only what JetStream confirmed counts as relayed.
        if acks:
            await asyncio.wait_for(asyncio.gather(*acks), 10)
        self._confirmed = notifications[-1].id
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save_soon())

    async def _save_soon(self) -> None:
        """Record the confirmed position at most every SAVE_POSITION_SECONDS, off the path
        of the next event: a relay restarted before it republishes those few, which
        JetStream's duplicate window and the consumers' event identity both absorb."""
        await asyncio.sleep(SAVE_POSITION_SECONDS)
        try:
            await asyncio.to_thread(self._save_position, self._confirmed)
        except Exception as error:  # the next batch saves it; a restart republishes a few
            if not self.stopping.is_set():
                log.warning("%s: position not saved: %s", self.name, _describe(error))

    async def flush(self) -> None:
        """Record the confirmed position now (a graceful stop)."""
        if self._saving is not None:
            self._saving.cancel()
        if self._confirmed:
            await asyncio.to_thread(self._save_position, self._confirmed)

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


Handler = Callable[[str, Message, Tracking], Awaitable[None]]

#: JetStream redelivers a message nobody acknowledged within this long. Short, so that the
#: messages a killed consumer held reach its replacement within seconds; a live consumer
#: keeps what it holds (a running handler, an early message waiting for an earlier one)
#: with in-progress acks every HEARTBEAT_SECONDS.
ACK_WAIT_SECONDS = 3.0
HEARTBEAT_SECONDS = 1.0
#: A message whose handler failed this often (in this process) is parked.
MAX_ATTEMPTS = 5
#: An event that arrived before an earlier one of its aggregate waits this long for it
#: (held by a dead consumer, redelivered after a failure), then is parked with the gap.
EARLY_WAIT_SECONDS = 30.0
#: At most this many early events wait in memory; more are handed back to JetStream.
MAX_EARLY = 512
#: How long a consumer off the dispatch path (review's histories, monitor's warning
#: outcomes: kept and counted, acted on by nobody) lets a fetched batch wait for the rest of
#: its burst: a declaration publishes a dozen events at once, and handling them while
#: dispatch and resources still act on the same burst delayed the unit assignment.
OFF_PATH_LINGER_SECONDS = 0.25
MAX_IDENTITY = 200
#: Aggregates whose last taken version an inbox remembers (a hint; the store decides).
MAX_REMEMBERED = 50_000


@dataclass
class Delivery:
    """One message with its event identity: upstream aggregate id and version."""

    msg: Msg
    aggregate_id: str
    version: int
    key: str  # "<upstream>/<aggregate id>": the tracking table's application_name
    message_type: type[Message] | None  # None: a type this consumer does not know
    handled: bool  # False: an event of the aggregate this consumer only tracks
    since: float = field(default_factory=time.monotonic)
    #: Taken as its aggregate's first without asking the store (see Inbox._position): its
    #: write refuses it if a later version was taken.
    first: bool = False

    @property
    def tracking(self) -> Tracking:
        return Tracking(application_name=self.key, notification_id=self.version)


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
    """

    def __init__(self, app: ServiceApplication, js: JetStreamContext, *, consumer: str,
                 upstream: str, subjects: Sequence[str],
                 message_types: dict[str, type[Message]], handle: Handler,
                 handles: Collection[str] | None = None, batch: int = 64,
                 max_attempts: int = MAX_ATTEMPTS, early_wait: float = EARLY_WAIT_SECONDS,
                 ack_wait: float = ACK_WAIT_SECONDS, linger: float = 0.0,
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
        self.now = now
        self.stopping = asyncio.Event()
        self._sub: Any = None
        self.processed = 0  # messages taken: applied, tracked, parked or found repeated
        self.parked = 0
        self._holding: dict[int, Msg] = {}  # stream sequence -> message not yet settled
        self._early: dict[tuple[str, int], Delivery] = {}
        self._attempts: dict[tuple[str, int], int] = {}
        self._retrying = asyncio.Lock()
        self._last: dict[str, int] = {}  # key -> last version taken, as far as we know
        self._unparked: dict[str, None] = {}  # keys known to have nothing parked
        self._deferred: dict[tuple[str, int], Delivery] = {}  # tracked, not yet written
        self._started = False  # whether this process has subscribed yet

    async def run(self) -> None:
        beat = asyncio.create_task(self._heartbeat())
        try:
            await retry_forever(f"consumer {self.consumer}", self._step, self.stopping)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _subscribe(self) -> Any:
        config = api.ConsumerConfig(
            durable_name=self.consumer, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, filter_subjects=self.subjects,
            ack_wait=self.ack_wait, max_ack_pending=1024,
        )
        stream = stream_name(self.upstream)
        try:
            await self.js.stream_info(stream)
        except NotFoundError:
            raise RuntimeError(f"stream {stream} does not exist yet; it appears when "
                               f"lifeline-{self.upstream} first starts") from None
        if not self._started:
            self._started = True
            await self._take_over(stream, config)
        # Creates it, finds it as it was, or updates its filter and ack_wait.
        await self.js.add_consumer(stream, config)
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
            messages = await self._sub.fetch(self.batch, timeout=1.0)
        except TimeoutError:
            messages = []
        except (NotFoundError, ServiceUnavailableError):
            self._sub = None  # the consumer is gone (a fresh broker): create it again
            self._forget()
            raise
        try:
            for msg in messages:
                self._holding[msg.metadata.sequence.stream] = msg
            if messages and self.linger and len(messages) < self.batch:
                messages += await self._gather(self.batch - len(messages))
            for msg in messages:
                await self._offer(msg)
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

    async def _gather(self, room: int) -> list[Msg]:
        """Wait `linger` seconds, then take what arrived meanwhile (at most room)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self.linger)
        try:
            more = await self._sub.fetch(room, timeout=0.05)
        except TimeoutError:
            return []
        for msg in more:
            self._holding[msg.metadata.sequence.stream] = msg
        return more

    def _forget(self) -> None:
        self._holding.clear()
        self._early.clear()
        self._deferred.clear()
        self._last.clear()  # the store is the truth again
        self._unparked.clear()

    def _remember(self, delivery: Delivery) -> None:
        self._last.pop(delivery.key, None)
        self._last[delivery.key] = delivery.version
        if len(self._last) > MAX_REMEMBERED:
            for key in list(itertools.islice(self._last, MAX_REMEMBERED // 10)):
                del self._last[key]

    async def _position(self, delivery: Delivery) -> tuple[int, bool]:
        """The last version taken of the delivery's aggregate, and whether this one was."""
        remembered = self._last.get(delivery.key)
        if remembered is not None and delivery.version == remembered + 1:
            return remembered, False
        if remembered is None and delivery.version == 1 and \
                (delivery.key, 1) not in self._attempts:
            # The first event of an aggregate new to this inbox (each warning, incident and
            # request starts so): taken without a round trip. Its write says whether that
            # was right: the tracking row's key refuses a repeat, a guard refuses it when a
            # later version was taken (and so parked, or parked behind: nothing parked
            # without its tracking row), and the retry then asks the store.
            delivery.first = True
            self._unparked[delivery.key] = None
            return 0, False
        last, seen, parked = await asyncio.to_thread(
            self.app.inbox_state, delivery.key, delivery.version,
            parking_id(self.consumer, delivery.aggregate_id))
        if not parked:
            self._unparked[delivery.key] = None  # the parking check needs no second look
        if remembered is not None:
            last = max(last, remembered)
        return last, seen or (delivery.key, delivery.version) in self._deferred

    async def _write_deferred(self) -> None:
        """Write the tracking rows still deferred, in one transaction; then acknowledge."""
        if self._deferred:
            await asyncio.to_thread(self.app.track,
                                    [d.tracking for d in self._deferred.values()])
            await self._settle_deferred()

    async def _settle_deferred(self) -> None:
        deferred = list(self._deferred.values())
        self._deferred.clear()
        for delivery in deferred:
            await self._settle(delivery.msg)
        self.processed += len(deferred)

    async def _heartbeat(self) -> None:
        """Tell JetStream we still work on what we hold, so a short ack_wait redelivers
        only what a dead consumer held."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), HEARTBEAT_SECONDS)
            for msg in list(self._holding.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _settle(self, msg: Msg, *, delay: float | None = None) -> None:
        """Ack (delay None) or hand back after delay; either way we hold it no more."""
        self._holding.pop(msg.metadata.sequence.stream, None)
        if delay is None:
            await msg.ack()
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
        identity = _identity(msg, message_type)
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
            if seen:
                await self._settle(delivery.msg)  # a repeat: redelivered or republished
                self.processed += 1
            elif delivery.version > last + 1:
                await self._wait_early(delivery)
                return
            elif delivery.version <= last:
                # Older than one already taken: only possible after a gap was parked; it
                # goes behind that parking, never applied out of order.
                await self._park(delivery, f"arrived after version {last} was taken", 0)
            elif not await self._apply(delivery):
                return  # handed back to be tried again; its followers keep waiting
            delivery = self._early.pop((delivery.key, delivery.version + 1), None)

    async def _wait_early(self, delivery: Delivery) -> None:
        key = (delivery.key, delivery.version)
        earlier = self._early.get(key)
        if earlier is not None:
            delivery.since = earlier.since  # a redelivery of one that already waits
        elif len(self._early) >= MAX_EARLY:
            await self._settle(delivery.msg, delay=1.0)
            return
        self._early[key] = delivery

    async def _expire_early(self) -> None:
        """Park early events whose predecessor never came (lost with a deleted stream, or
        held somewhere for too long), oldest version first."""
        limit = time.monotonic() - self.early_wait
        expired = sorted((d for d in self._early.values() if d.since < limit),
                         key=lambda d: (d.key, d.version))
        for delivery in expired:
            if self._early.pop((delivery.key, delivery.version), None) is None:
                continue  # taken meanwhile, after an earlier one was parked
            last, _ = await asyncio.to_thread(self.app.inbox_position, delivery.key,
                                              delivery.version)
            if delivery.version <= last + 1:
                await self._take(delivery)
                continue
            await self._park(delivery, f"gap: versions {last + 1}..{delivery.version - 1} "
                             f"did not arrive within {self.early_wait:g}s", 0)
            await self._take(self._early.pop((delivery.key, delivery.version + 1), None))

    async def _apply(self, delivery: Delivery) -> bool:
        """Apply the next event of its aggregate; False when it is to be tried again."""
        ident = (delivery.key, delivery.version)
        try:
            held = await self._process(delivery)
        except Exception as error:
            self._unparked.pop(delivery.key, None)
            _, seen = await asyncio.to_thread(self.app.inbox_position, *ident)
            if seen:  # taken before, or by another instance meanwhile (our write conflicted)
                await self._settle(delivery.msg)
                self.processed += 1
                return True
            attempts = self._attempts[ident] = self._attempts.get(ident, 0) + 1
            if attempts >= self.max_attempts:
                self._attempts.pop(ident, None)
                await self._park(delivery, _describe(error), attempts)
                return True
            log.warning("%s: %s version %d failed (attempt %d of %d): %s", self.consumer,
                        delivery.aggregate_id, delivery.version, attempts, self.max_attempts,
                        _describe(error))
            await self._settle(delivery.msg, delay=min(0.1 * 2 ** attempts, 2.0))
            return False
        self._attempts.pop(ident, None)
        self._remember(delivery)
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
            self._deferred[(delivery.key, delivery.version)] = delivery
            return None
        # Behind a parked version before anything else: even one that would fail waits.
        if delivery.key not in self._unparked:
            if await asyncio.to_thread(retry_conflicts,
                                       lambda: self._hold_if_parked(delivery)):
                return True
            self._unparked[delivery.key] = None
            if len(self._unparked) > MAX_REMEMBERED:
                del self._unparked[next(iter(self._unparked))]
        wrapper = delivery.message_type.FromString(delivery.msg.data)
        with self.app.also_tracking([d.tracking for d in self._deferred.values()],
                                    delivery.tracking if delivery.first else None) as also:
            await self._handle(delivery.msg.subject, wrapper, delivery.msg.headers or {},
                               delivery.tracking)
        if also.written:
            await self._settle_deferred()
        return False

    async def _handle(self, subject: str, wrapper: Message, headers: dict[str, str],
                      tracking: Tracking) -> None:
        token = otel_context.attach(propagate.extract(headers))
        try:
            with tracer.start_as_current_span(f"consume {subject}",
                                              kind=trace.SpanKind.CONSUMER):
                await self.handle(subject, wrapper, tracking)
        finally:
            otel_context.detach(token)

    # ---- parking ----

    def _parked_message(self, delivery: Delivery, error: str, attempts: int
                        ) -> parking_pb2.ParkedMessage:
        msg = delivery.msg
        return parking_pb2.ParkedMessage(
            version=delivery.version, subject=msg.subject,
            message_type=(msg.headers or {}).get(TYPE_HEADER, ""), data=msg.data,
            headers={k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)},
            error=error, attempts=attempts)

    def _cause(self) -> Cause:
        return Cause(actor=self.consumer, occurred_at=self.now())

    def _hold_if_parked(self, delivery: Delivery) -> bool:
        """Park the next event of an aggregate that has parked ones, behind them."""
        parking = self.app.find(Parking, parking_id(self.consumer, delivery.aggregate_id))
        head = parking.head if parking is not None else None
        if parking is None or head is None:
            return False
        message = self._parked_message(delivery, f"parked behind version {head.version}", 0)
        Parking.park(parking, self.consumer, self.upstream, delivery.aggregate_id, message,
                     self._cause(), self.now())
        self.app.record(parking, tracking=delivery.tracking)
        return True

    async def _park(self, delivery: Delivery, error: str, attempts: int) -> None:
        """Record the message in a parking, with its identity in the same transaction."""
        message = self._parked_message(delivery, error, attempts)
        self._unparked.pop(delivery.key, None)

        def step() -> None:
            found = self.app.find(Parking, parking_id(self.consumer, delivery.aggregate_id))
            parking = Parking.park(found, self.consumer, self.upstream, delivery.aggregate_id,
                                   message, self._cause(), self.now())
            self.app.record(parking, tracking=delivery.tracking)

        await asyncio.to_thread(retry_conflicts, step)
        log.error("%s: parked %s version %d (%s): %s", self.consumer, delivery.aggregate_id,
                  delivery.version, delivery.msg.subject, error)
        await self._settle(delivery.msg)
        self.processed += 1
        self.parked += 1

    async def retry_parked(self, ident: UUID, cause: Cause) -> int:
        """Apply a parking's waiting messages, oldest first, until one fails again; how
        many were applied. Each writes its effects with the parking's `retried` event."""
        applied = 0
        async with self._retrying:
            while True:
                parking = await asyncio.to_thread(self.app.find, Parking, ident)
                head = parking.head if parking is not None else None
                if parking is None or head is None:
                    return applied
                error = await self._retry_one(parking, head, cause)
                if error is not None:
                    def failed(version: int = head.version, why: str = error) -> None:
                        again = self.app.load(Parking, ident, "parking", str(ident))
                        again.retry_failed(version, why, cause, self.now())
                        self.app.record(again)

                    await asyncio.to_thread(retry_conflicts, failed)
                    return applied
                applied += 1

    async def _retry_one(self, parking: Parking, head: parking_pb2.ParkedMessage,
                         cause: Cause) -> str | None:
        rode: list[bool] = []

        def riders() -> list[Parking]:
            # Afresh on each attempt: a conflict retried sees the parking as it is now.
            current = self.app.load(Parking, parking.id, "parking", str(parking.id))
            current.retried(head.version, cause, self.now())
            rode.append(True)
            return [current]

        tracking = Tracking(f"{self.upstream}/{parking.view.upstream_aggregate_id}",
                            head.version)
        message_type = self.message_types.get(head.message_type)
        handled = self.handles is None or head.subject in self.handles
        try:
            with self.app.tracked_by(riders):
                if message_type is not None and handled:
                    await self._handle(head.subject, message_type.FromString(head.data),
                                       dict(head.headers), tracking)
                if not rode:  # the handler wrote nothing: record the retry by itself
                    await asyncio.to_thread(retry_conflicts,
                                            lambda: self.app.record(tracking=tracking))
        except RuleViolation as violation:
            if violation.rule == "retry-once":
                return None  # another retry applied it meanwhile
            return _describe(violation)
        except Exception as error:
            return _describe(error)
        return None


def _identity(msg: Msg, message_type: type[Message] | None) -> tuple[str, int] | None:
    """The event's identity: from Nats-Msg-Id (what the relay sets), else its EventMeta."""
    msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
    aggregate_id, _, version = msg_id.rpartition("/")
    if aggregate_id and version.isdigit() and len(msg_id) <= MAX_IDENTITY:
        return aggregate_id, int(version)
    if message_type is not None:
        with contextlib.suppress(Exception):
            meta = meta_of(message_type.FromString(msg.data))
            if meta.aggregate_id and meta.sequence and len(meta.aggregate_id) <= MAX_IDENTITY:
                return meta.aggregate_id, int(meta.sequence)
    return None


def _describe(error: BaseException) -> str:
    # Kept with the parked message and shown to operators: bounded.
    return f"{type(error).__name__}: {error}"[:500]
