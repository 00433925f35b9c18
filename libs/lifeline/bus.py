"""NATS JetStream: one stream per service, an outbox relay out, durable consumers in.

Outbox: the relay follows the application's notification log in order and publishes each
event with `Nats-Msg-Id` = the event's identity; only after JetStream acknowledged a batch
does it record how far it got. Nothing writes to the store and the broker in one breath.

Inbox: durable pull consumers; what a handler does with a message is written in the same
transaction as the message's stream position, so a redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ServiceUnavailableError
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from lifeline.events import ProtoAggregate, event_of
from lifeline.follow import LogFollower, retry_forever
from lifeline.identity.nats import inbox_prefix, stream_name
from lifeline.store import ServiceApplication

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

TYPE_HEADER = "Lifeline-Type"
SCHEMA_HEADER = "Lifeline-Schema"
SCHEMA_VERSION = "v1"


def subject_for(service: str, wrapper: Message) -> str:
    """lifeline.<service>.<aggregate>.<event>, e.g. lifeline.dispatch.incident.declared."""
    aggregate = _snake(wrapper.DESCRIPTOR.name.removesuffix("Event"))
    return f"lifeline.{service}.{aggregate}.{event_of(wrapper)[0]}"


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


async def ensure_stream(js: JetStreamContext, service: str, replicas: int = 1) -> None:
    config = api.StreamConfig(name=stream_name(service), subjects=[f"lifeline.{service}.>"],
                              storage=api.StorageType.FILE, duplicate_window=120.0,
                              num_replicas=replicas)
    try:
        await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


class OutboxRelay(LogFollower):
    """Publishes the application's events to its stream, in notification order."""

    def __init__(self, app: ServiceApplication, js: JetStreamContext, service: str) -> None:
        super().__init__(app, f"{service} outbox relay")
        self.js, self.service = js, service

    async def load_position(self) -> int:
        return await asyncio.to_thread(self.app.process_recorder.max_tracking_id, "outbox") or 0

    async def handle(self, notifications: Sequence[Notification]) -> None:
        acks = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            if not isinstance(event, ProtoAggregate.Recorded):
                continue  # internal records (idempotency keys) stay in the service
            wrapper = event.message(_aggregate_class(event).EVENT_TYPE)
            subject = subject_for(self.service, wrapper)
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
        await asyncio.to_thread(self._save_position, notifications[-1].id)

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


class Inbox:
    """A durable pull consumer whose handler records its effects with the stream position."""

    def __init__(self, app: ServiceApplication, js: JetStreamContext, *, consumer: str,
                 upstream: str, subjects: Sequence[str],
                 message_types: dict[str, type[Message]], handle: Handler,
                 batch: int = 64) -> None:
        self.app, self.js = app, js
        self.consumer, self.upstream, self.subjects = consumer, upstream, list(subjects)
        self.message_types, self.handle, self.batch = message_types, handle, batch
        self.stopping = asyncio.Event()
        self._sub: Any = None
        self.processed = 0

    async def run(self) -> None:
        await retry_forever(f"consumer {self.consumer}", self._step, self.stopping)

    async def _subscribe(self) -> Any:
        config = api.ConsumerConfig(
            durable_name=self.consumer, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, filter_subjects=self.subjects,
            ack_wait=10.0, max_ack_pending=1024,
        )
        stream = stream_name(self.upstream)
        try:
            await self.js.stream_info(stream)
        except NotFoundError:
            raise RuntimeError(f"stream {stream} does not exist yet; it appears when "
                               f"lifeline-{self.upstream} first starts") from None
        await self.js.add_consumer(stream, config)  # creates it, or finds it as it was
        return await self.js.pull_subscribe_bind(durable=self.consumer, stream=stream)

    async def _step(self) -> None:
        if self._sub is None:
            self._sub = await self._subscribe()
        try:
            # Short pulls without idle heartbeats: nats-py re-sends the remaining expiry with
            # the same heartbeat, which the server refuses once the expiry gets short; a 1 s
            # pull bounds any stall after a broker restart just as well.
            messages = await self._sub.fetch(self.batch, timeout=1.0)
        except TimeoutError:
            return
        except (NotFoundError, ServiceUnavailableError):
            self._sub = None  # the consumer is gone (a fresh broker): create it again
            raise
        for index, msg in enumerate(messages):
            try:
                await self._process(msg)
            except Exception:
                # Keep the order: this one and the rest of the batch come again later.
                for later in messages[index:]:
                    with contextlib.suppress(Exception):
                        await later.nak(delay=0.5)
                raise
            await msg.ack()
            self.processed += 1

    async def _process(self, msg: Msg) -> None:
        tracking = Tracking(application_name=stream_name(self.upstream),
                            notification_id=msg.metadata.sequence.stream)
        headers = msg.headers or {}
        message_type = self.message_types.get(headers.get(TYPE_HEADER, ""))
        if not msg.subject.startswith(f"lifeline.{self.upstream}."):
            # Only the upstream service may publish on its subjects; anything else in its
            # stream (a misconfigured stream, a forged message) is not its event.
            log.warning("%s: ignored a message on %s, which is not lifeline-%s's",
                        self.consumer, msg.subject[:80], self.upstream)
            message_type = None
        if message_type is None:
            # Not ours to interpret (a newer event type): remember we saw it and move on.
            await asyncio.to_thread(self._mark_seen, tracking)
            return
        wrapper = message_type.FromString(msg.data)
        token = otel_context.attach(propagate.extract(headers))
        try:
            with tracer.start_as_current_span(f"consume {msg.subject}",
                                              kind=trace.SpanKind.CONSUMER):
                if not await asyncio.to_thread(self.app.is_processed, tracking):
                    await self.handle(msg.subject, wrapper, tracking)
        finally:
            otel_context.detach(token)

    def _mark_seen(self, tracking: Tracking) -> None:
        if not self.app.is_processed(tracking):
            self.app.record(tracking=tracking)
