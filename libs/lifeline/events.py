"""Aggregates whose events are the public protobuf messages.

Every service keeps its aggregates in `eventsourcing`, but the payload of each event is a
`lifeline.<area>.v1` wrapper message (a `oneof` of event types). So the stored history, the
NATS messages and the exported NDJSON are one schema, and a reader (review) folds exactly
what the writer (dispatch) recorded.

How the events are stored is `lifeline.encoding`'s business.

A command method checks its rule and calls `record`; `when` only changes state. The message
`when` receives is the event's own payload, written to the store when the command commits:
`when` keeps copies of what it needs (assigning into protobuf fields and lists copies),
never the message or its parts to change later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from lifeline.common.v1 import common_pb2

LIFELINE_NS = uuid5(NAMESPACE_URL, "https://lifeline.city/")


def stable_id(*parts: str) -> UUID:
    """A UUID that is the same every time for the same parts (idempotent creation)."""
    return uuid5(LIFELINE_NS, "|".join(parts))


def to_timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: Per wrapper type, in the order the schema changed: each turns an older JSON shape into
#: the next. Schema changes are additive; a renamed field or value ships an upcaster here.
UPCASTERS: dict[str, list[Upcaster]] = {}


def register_upcaster(message_type: type[Message], upcaster: Upcaster) -> None:
    UPCASTERS.setdefault(message_type.DESCRIPTOR.full_name, []).append(upcaster)


def upcast(data: dict[str, Any], message_type: type[Message]) -> dict[str, Any]:
    for upcaster in UPCASTERS.get(message_type.DESCRIPTOR.full_name, ()):
        data = upcaster(data)
    return data


def from_json(data: dict[str, Any], message_type: type[Message], *, strict: bool = False
              ) -> Message:
    """Parse canonical JSON of an older or current schema. Stored events ignore fields
    they do not know (a newer writer during a rolling upgrade); strict parsing refuses
    them (imports from elsewhere)."""
    return json_format.ParseDict(upcast(data, message_type), message_type(),
                                 ignore_unknown_fields=not strict)


def event_of(wrapper: Message) -> tuple[str, Any]:
    """The oneof member of a wrapper message: (field name, inner event)."""
    name = wrapper.WhichOneof("event")
    if name is None:
        raise ValueError(f"empty {wrapper.DESCRIPTOR.name}")
    return name, getattr(wrapper, name)


def meta_of(wrapper: Message) -> common_pb2.EventMeta:
    meta: common_pb2.EventMeta = event_of(wrapper)[1].meta
    return meta


def fold(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's `project_aggregate` without its assertion that each event satisfies a
    runtime-checkable Protocol, which on Python 3.11 costs more than the fold itself. For
    `repository.get(..., projector_func=fold)`."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


@dataclass(frozen=True)
class Cause:
    """Who did it, when it happened in the field, and what led to it."""

    actor: str
    occurred_at: datetime
    reason: str = ""
    #: The system that acted on the actor's behalf, if any.
    via: str = ""
    correlation_id: str = ""
    causation_id: str = ""


class ProtoAggregate(Aggregate):
    """An aggregate whose events carry one protobuf wrapper message each."""

    #: The wrapper message type with a `oneof event` of this aggregate's events.
    EVENT_TYPE: ClassVar[type[Message]]
    #: Record every event in the trace of the aggregate's first event (an incident's trace
    #: then runs from the sensor reading to the last unit assigned), not the caller's.
    CONTINUES_ORIGIN_TRACE: ClassVar[bool] = False

    class Recorded(Aggregate.Event):
        #: The wrapper message; canonical JSON (a dict) when loaded from a row written
        #: before events were stored binary.
        payload: Message | dict[str, Any]
        trace: dict[str, str]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, ProtoAggregate)
            if self.originator_version == 1:
                aggregate.origin_trace = self.trace
            aggregate.when(aggregate.decode(self.payload))

        def message(self, wrapper_type: type[Message]) -> Message:
            if isinstance(self.payload, Message):
                return self.payload
            return from_json(self.payload, wrapper_type)

    class Started(Recorded, Aggregate.Created):
        pass

    def __init__(self) -> None:
        """State is set up by `when` on the first event."""
        self.origin_trace: dict[str, str] = {}

    @classmethod
    def decode(cls, payload: Message | dict[str, Any]) -> Message:
        """The event's wrapper message (shared, not copied: events are never changed)."""
        if isinstance(payload, Message):
            return payload
        return from_json(payload, cls.EVENT_TYPE)

    def when(self, wrapper: Message) -> None:
        raise NotImplementedError

    @classmethod
    def relayed(cls, wrapper: Message) -> bool:
        """Whether the outbox relay publishes this event on the service's stream (every
        event, unless the aggregate says otherwise)."""
        return True

    def when_all(self, wrappers: Sequence[Message]) -> None:
        """`when` for each event of a replay, in order; an aggregate may fold them in one
        pass to the same state."""
        for wrapper in wrappers:
            self.when(wrapper)

    @classmethod
    def start(cls, aggregate_id: UUID, field: str, event: Message, cause: Cause,
              recorded_at: datetime) -> Self:
        wrapper = _wrap(cls.EVENT_TYPE, field, event, aggregate_id, 1, cause, recorded_at)
        return cls._create(cls.Started, id=aggregate_id, payload=wrapper,
                           trace=_trace_context())

    def record(self, field: str, event: Message, cause: Cause, recorded_at: datetime) -> None:
        wrapper = _wrap(self.EVENT_TYPE, field, event, self.id, self.version + 1, cause,
                        recorded_at)
        trace = self.origin_trace if self.CONTINUES_ORIGIN_TRACE else {}
        self.trigger_event(self.Recorded, payload=wrapper, trace=trace or _trace_context())


def _wrap(wrapper_type: type[Message], field: str, event: Message, aggregate_id: UUID,
          sequence: int, cause: Cause, recorded_at: datetime) -> Message:
    meta: common_pb2.EventMeta = event.meta  # type: ignore[attr-defined]
    meta.aggregate_id = str(aggregate_id)
    meta.sequence = sequence
    meta.occurred_at.CopyFrom(to_timestamp(cause.occurred_at))
    meta.recorded_at.CopyFrom(to_timestamp(recorded_at))
    meta.actor = cause.actor
    meta.via = cause.via
    meta.reason = cause.reason
    meta.correlation_id = cause.correlation_id
    meta.causation_id = cause.causation_id
    wrapper = wrapper_type()
    getattr(wrapper, field).CopyFrom(event)
    return wrapper


#: The trace context kept with a new event, so the relay can continue the trace that caused
#: it: none until the store installs OpenTelemetry's (`keep_trace_context`), so the domain
#: names no tracing library.
_trace_context: Callable[[], dict[str, str]] = dict


def keep_trace_context(current: Callable[[], dict[str, str]]) -> None:
    """Keep `current()` (the caller's trace context) with every event recorded from now on."""
    global _trace_context
    _trace_context = current
