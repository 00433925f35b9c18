"""How events are stored: each ProtoAggregate event as its wrapper message in binary
protobuf behind a small head (`ProtoMapper`), histories read back in bulk (`replay_rows`),
and old JSON rows re-encoded.

Rows written before the binary form hold the message's canonical JSON and still load (the
JSON is parsed, upcasters applied). Binary, because parsing canonical JSON cost far more
than the fold itself when a history was loaded (`bench/replay.py`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NamedTuple, cast
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, OriginatorVersionError
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from google.protobuf.message import Message

from lifeline.events import UPCASTERS, ProtoAggregate, fold, from_json, to_json

#: Version of the binary stored form's schema (the `lifeline.*.v1` messages). Binary
#: protobuf keeps renamed fields and values by number, so renames need no upcaster there;
#: upcasters registered for a type still run on every row of it (through JSON; they leave
#: today's shape alone), for changes that are more than a rename.
STORED_SCHEMA_VERSION = 1
#: Starts every binary row; a JSON row starts with "{".
_BINARY = b"\x00LLpb"
_BINARY_SIZE = len(_BINARY)
#: Schema version, recording time (µs since the epoch), length of the rest of the head.
_HEAD = struct.Struct(">BqI")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_KEYS = {"originator_id", "originator_version", "timestamp", "payload", "trace"}


def _head(stored: bytes) -> tuple[datetime, dict[str, str], str | None, int]:
    """A binary row's head: when it was recorded, its trace context, its aggregate's topic
    (a first event's), and where the wrapper message starts."""
    _schema, micros, length = _HEAD.unpack_from(stored, _BINARY_SIZE)
    start = _BINARY_SIZE + _HEAD.size
    trace: dict[str, str] = {}
    topic = None
    if length:
        rest = stored[start:start + length]
        if rest[:1] == b"p":
            trace = {"traceparent": rest[1:].decode()}
        elif rest[:1] == b"t":
            name, _, parent = rest[1:].decode().partition("\n")
            trace, topic = ({"traceparent": parent} if parent else {}), name
        else:
            head = json.loads(rest)
            trace, topic = head["tr"], head.get("ot")
    return _EPOCH + timedelta(microseconds=micros), trace, topic, start + length


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


class ProtoMapper(Mapper[UUID]):
    """Stores a ProtoAggregate's event as its wrapper message in binary protobuf, behind a
    small head: schema version, recording time, and the trace context (and, for the first
    event, the aggregate's topic): empty, `p` + a lone traceparent, `t` + the topic, a
    newline and a lone traceparent or nothing, or JSON (any other trace context; every first
    event before the `t` form, still read). Every other event, and every row written as
    JSON before this mapper, goes through the library's JSON transcoder as before."""

    _types: ClassVar[dict[str, tuple[type[Any], type[Message], str]]] = {}

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = dict(vars(domain_event))
        payload = state.get("payload")
        if not isinstance(payload, Message) or not state.keys() - {"originator_topic"} \
                <= _EVENT_KEYS or getattr(type(domain_event), "class_version", 1) != 1:
            return super().to_stored_event(domain_event)
        trace: dict[str, str] = state["trace"]
        topic = state.get("originator_topic")
        if trace.keys() - {"traceparent"} or "\n" in (topic or ""):
            rest = json.dumps({"tr": trace, "ot": topic}, separators=(",", ":")).encode()
        elif topic:
            rest = f"t{topic}\n{trace.get('traceparent', '')}".encode()
        else:
            rest = b"p" + trace["traceparent"].encode() if trace else b""
        micros = (state["timestamp"] - _EPOCH) // timedelta(microseconds=1)
        stored = b"".join((_BINARY, _HEAD.pack(STORED_SCHEMA_VERSION, micros, len(rest)),
                           rest, payload.SerializeToString()))
        if self.compressor:
            stored = self.compressor.compress(stored)
        if self.cipher:
            stored = self.cipher.encrypt(stored)
        return StoredEvent(originator_id=domain_event.originator_id,
                           originator_version=domain_event.originator_version,
                           topic=get_topic(type(domain_event)), state=stored)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        stored = self._plain(stored_event.state)
        if stored[:_BINARY_SIZE] != _BINARY:
            return super().to_domain_event(stored_event)
        cls = (self._types.get(stored_event.topic) or self._event_types(stored_event.topic))[0]
        timestamp, trace, topic, start = _head(stored)
        state: dict[str, Any] = {
            "originator_id": _uuid(stored_event.originator_id),
            "originator_version": stored_event.originator_version,
            "timestamp": timestamp,
            "payload": self._wrapper(stored_event.topic, stored, start),
            "trace": trace}
        if topic:
            state["originator_topic"] = topic
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def wrappers(self, rows: StoredRows) -> list[Message]:
        """The wrapper messages of a ProtoAggregate's stored rows, decoded and upcast as
        `to_domain_event` does, without a domain event around each binary one: all a
        replay needs of most events (`replay_rows`). (Parsing a history's payloads as one
        message of a repeated field measured no faster than a FromString each.)"""
        states = rows.states
        if not states:
            return []
        topic = rows.topics[-1]
        _, wrapper_type, type_name = self._types.get(topic) or self._event_types(topic)
        if not (self.cipher or self.compressor or UPCASTERS.get(type_name)) and \
                {(self._types.get(t) or self._event_types(t))[1] for t in set(rows.topics)} \
                == {wrapper_type}:
            # The common case, one wrapper type (an aggregate's created event and the rest)
            # stored binary and nothing to upcast: one pass.
            parse, unpack, skip = wrapper_type.FromString, _HEAD.unpack_from, _BINARY_SIZE
            out = [parse(state[skip + _HEAD.size + unpack(state, skip)[2]:])
                   for state in states if state.startswith(_BINARY)]
            if len(out) == len(states):
                return out
            # Some rows were written as JSON before: the general path below.
        out = []
        for version, topic, state in zip(rows.versions, rows.topics, states, strict=True):
            stored = self._plain(bytes(state))
            _, wrapper_type, type_name = self._types.get(topic) or self._event_types(topic)
            if not stored.startswith(_BINARY):  # a row written as JSON before
                payload = self._payload_of(self.to_domain_event(StoredEvent(
                    originator_id=rows.originator_id, originator_version=version, topic=topic,
                    state=bytes(stored))), wrapper_type)
            else:
                payload = self._wrapper(topic, stored,
                                        _BINARY_SIZE + _HEAD.size
                                        + _HEAD.unpack_from(stored, _BINARY_SIZE)[2])
            out.append(payload)
        return out

    def started(self, rows: StoredRows) -> ProtoAggregate | None:
        """The ProtoAggregate the first of `rows` starts, as the library's `mutate` of its
        created event makes it (id, version 1, created and modified on, origin trace), with
        no event applied yet and no domain event made; None when the row needs the general
        path (`replay_rows`): a replay across incidents starts thousands, and the domain
        event and `mutate`'s generic work cost more than a history's first steps."""
        stored = rows.states[0]
        if self.cipher or self.compressor or rows.versions[0] != 1 \
                or not stored.startswith(_BINARY):
            return None
        timestamp, trace, topic, _ = _head(stored)
        aggregate_class = resolve_topic(topic) if topic else None
        if not (isinstance(aggregate_class, type) and issubclass(aggregate_class, ProtoAggregate)):
            return None
        aggregate = aggregate_class.__new__(aggregate_class)
        aggregate.__base_init__(_uuid(rows.originator_id), 1, timestamp)
        aggregate_class.__init__(aggregate)
        aggregate.origin_trace = trace
        return aggregate

    def recorded_on(self, rows: StoredRows, index: int) -> datetime:
        """When the row's event was recorded (its domain event's timestamp), read from the
        binary head without decoding the rest."""
        stored = rows.states[index]
        if self.cipher or self.compressor or not stored.startswith(_BINARY):
            event: Any = self.to_domain_event(rows.row(index))
            return cast(datetime, event.timestamp)
        return _EPOCH + timedelta(microseconds=_HEAD.unpack_from(stored, _BINARY_SIZE)[1])

    @staticmethod
    def _payload_of(event: Any, wrapper_type: type[Message]) -> Message:
        payload = vars(event)["payload"]
        return payload if isinstance(payload, Message) else from_json(payload, wrapper_type)

    def _plain(self, stored: bytes) -> bytes:
        if self.cipher:
            stored = self.cipher.decrypt(stored)
        if self.compressor:
            stored = self.compressor.decompress(stored)
        return stored

    def _wrapper(self, topic: str, stored: bytes, start: int) -> Message:
        _, wrapper_type, type_name = self._types.get(topic) or self._event_types(topic)
        payload: Message = wrapper_type.FromString(stored[start:])
        if UPCASTERS and UPCASTERS.get(type_name):
            payload = from_json(to_json(payload), wrapper_type)
        return payload

    @classmethod
    def _event_types(cls, topic: str) -> tuple[type[Any], type[Message], str]:
        event_class = resolve_topic(topic)
        module, qualname = topic.split(":", 1)
        wrapper: type[Message] = resolve_topic(
            f"{module}:{qualname.rsplit('.', 1)[0]}").EVENT_TYPE
        found = cls._types[topic] = (event_class, wrapper, wrapper.DESCRIPTOR.full_name)
        return found


class StoredRows(NamedTuple):
    """One aggregate's stored rows as columns, in version order: what review's query
    across incidents gives for each history (`array_agg`, one row per history)."""

    originator_id: UUID
    versions: Sequence[int]
    topics: Sequence[str]
    states: Sequence[bytes]

    def row(self, index: int) -> StoredEvent:
        return StoredEvent(originator_id=self.originator_id,
                           originator_version=self.versions[index], topic=self.topics[index],
                           state=bytes(self.states[index]))


def replay_rows(mapper: Mapper[UUID], rows: StoredRows) -> Any:
    """One aggregate from its stored rows: the aggregate the repository's fold gives
    (state, version, modified_on, origin trace). For a ProtoAggregate, no row becomes a
    domain event (`ProtoMapper.started` makes the aggregate, or the first row's event where
    it cannot); the wrapper messages of the rest go to `when_all` at once (a question across
    incidents replays hundreds of thousands of events)."""
    count = len(rows.versions)
    if not isinstance(mapper, ProtoMapper):
        return fold(None, (mapper.to_domain_event(rows.row(n)) for n in range(count)))
    aggregate: Any = mapper.started(rows)
    rest = rows
    if aggregate is None:
        aggregate = mapper.to_domain_event(rows.row(0)).mutate(None)  # type: ignore[attr-defined]
        if not isinstance(aggregate, ProtoAggregate) or count == 1:
            return fold(aggregate, (mapper.to_domain_event(rows.row(n))
                                    for n in range(1, count)))
        rest = StoredRows(rows.originator_id, rows.versions[1:], rows.topics[1:],
                          rows.states[1:])
    versions, first = rest.versions, aggregate.version + (rest is not rows)
    if list(versions) != list(range(first, first + len(versions))):
        for expected, version in enumerate(versions, start=first):
            if version != expected:
                raise OriginatorVersionError(version, expected)
    aggregate.when_all(mapper.wrappers(rest))
    aggregate.version = versions[-1]
    aggregate.modified_on = mapper.recorded_on(rows, count - 1)
    return aggregate


def reencode_json_rows(app: Any, batch: int = 500) -> int:
    """Rewrite an application's events stored as canonical JSON (before `ProtoMapper`) in
    the binary form, in place, a batch per transaction; how many were rewritten. Rows keep
    their ids, versions and notification ids, and say the same: only the encoding changes.
    Optional (JSON rows load as they are); it makes an old store replay at binary speed.
    Other events (a service's internal records) stay as they are."""
    from psycopg import sql

    recorder = app.process_recorder
    mapper = app.mapper
    assert isinstance(mapper, ProtoMapper)
    table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    select = sql.SQL(
        "SELECT originator_id, originator_version, topic, state, notification_id FROM {} "
        "WHERE notification_id > %s AND get_byte(state, 0) = 123 "  # "{": a JSON row
        "ORDER BY notification_id LIMIT %s FOR UPDATE").format(table)
    update = sql.SQL("UPDATE {} SET state = %s WHERE originator_id = %s AND "
                     "originator_version = %s").format(table)
    done, after = 0, 0
    while True:
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(select, (after, batch))
            rows = cursor.fetchall()
            for row in rows:
                after = row["notification_id"]
                stored = StoredEvent(originator_id=row["originator_id"],
                                     originator_version=row["originator_version"],
                                     topic=row["topic"], state=bytes(row["state"]))
                try:
                    _, wrapper_type, _ = ProtoMapper._event_types(stored.topic)
                except AttributeError:
                    continue  # not a ProtoAggregate's event
                event = mapper.to_domain_event(stored)
                payload = vars(event).get("payload")
                if not isinstance(payload, dict):
                    continue
                object.__setattr__(event, "payload", from_json(payload, wrapper_type))
                binary = mapper.to_stored_event(event)
                cursor.execute(update, (binary.state, stored.originator_id,
                                        stored.originator_version))
                done += 1
        if len(rows) < batch:
            return done
