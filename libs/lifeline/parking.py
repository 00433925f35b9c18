"""Parked messages: what a consumer could not apply, kept in its own store so that the
service goes on with everything else, shown to operators, retried or discarded by them.

A `Parking` is one upstream aggregate's parked messages at one consumer. The message that
failed too often (or waited too long for an earlier version) is parked with its error;
the same aggregate's later messages are parked behind it, in order, so that one aggregate's
events never overtake each other. Other aggregates' messages flow on. A retry applies the
waiting messages oldest first; each writes its effects in one transaction with the
parking's `retried` event, so a retry happens once however often it is asked for.

This module is the aggregate and its read-model rows; `lifeline.parking_servicer` answers
the three calls operators make.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from google.protobuf.message import Message

from lifeline.common.v1 import parking_pb2 as pb
from lifeline.errors import RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, stable_id, to_timestamp
from lifeline.views import RowsFor, ViewRow

WAITING, CLEAR = "WAITING", "CLEAR"


def parking_id(consumer: str, upstream_aggregate_id: str) -> UUID:
    return stable_id("parking", consumer, upstream_aggregate_id)


class Parking(ProtoAggregate):
    EVENT_TYPE = pb.ParkingEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        if field == "parked":
            if not hasattr(self, "view"):
                self.view = pb.Parking(id=str(self.id), consumer=event.consumer,
                                       upstream=event.upstream,
                                       upstream_aggregate_id=event.upstream_aggregate_id)
                self.held: dict[int, pb.ParkedMessage] = {}
            message = pb.ParkedMessage()
            message.CopyFrom(event.message)
            self.held[message.version] = message
        elif field == "retried":
            self.held.pop(event.version, None)
            self.view.retried += 1
        elif field == "retry_failed":
            failed = self.held.get(event.version)
            if failed is not None:
                failed.error, failed.attempts = event.error, failed.attempts + 1
        elif field == "discarded":
            self.held.pop(event.version, None)
            self.view.discarded += 1

    @classmethod
    def park(cls, found: Parking | None, consumer: str, upstream: str, aggregate_id: str,
             message: pb.ParkedMessage, cause: Cause, now: datetime) -> Parking:
        message.parked_at.CopyFrom(to_timestamp(now))
        event = pb.MessageParked(consumer=consumer, upstream=upstream,
                                 upstream_aggregate_id=aggregate_id, message=message)
        if found is None:
            return cls.start(parking_id(consumer, aggregate_id), "parked", event, cause, now)
        found.record("parked", event, cause, now)
        return found

    @property
    def waiting(self) -> list[pb.ParkedMessage]:
        """The messages still parked, oldest version first."""
        return [self.held[v] for v in sorted(self.held)]

    @property
    def head(self) -> pb.ParkedMessage | None:
        return self.held[min(self.held)] if self.held else None

    def retried(self, version: int, cause: Cause, now: datetime) -> None:
        if version not in self.held:
            raise RuleViolation("retry-once", f"version {version} of "
                                f"{self.view.upstream_aggregate_id} is no longer parked")
        self.record("retried", pb.ParkedMessageRetried(version=version), cause, now)

    def retry_failed(self, version: int, error: str, cause: Cause, now: datetime) -> None:
        if version in self.held:
            self.record("retry_failed", pb.ParkedRetryFailed(version=version, error=error),
                        cause, now)

    def discard_head(self, cause: Cause, now: datetime) -> int:
        head = self.head
        if head is None:
            raise RuleViolation("discard-waiting", f"parking {self.id} holds no waiting message")
        self.record("discarded", pb.ParkedMessageDiscarded(version=head.version), cause, now)
        return head.version

    def summary(self) -> pb.Parking:
        """The view operators see: the waiting messages without their payloads."""
        view = pb.Parking()
        view.CopyFrom(self.view)
        for message in self.waiting:
            shown = view.waiting.add()
            shown.CopyFrom(message)
            shown.ClearField("data")
            shown.ClearField("headers")
        return view


def with_parking_rows(rows_for: RowsFor) -> RowsFor:
    """A service's read model, plus a row per parking (for ListParked)."""

    def rows(aggregate: ProtoAggregate) -> Sequence[ViewRow]:
        if isinstance(aggregate, Parking):
            return [ViewRow("parking", str(aggregate.id), aggregate.summary(),
                            status=WAITING if aggregate.held else CLEAR,
                            category=aggregate.view.consumer)]
        return rows_for(aggregate)

    return rows
