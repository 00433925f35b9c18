"""Review's domain: every incident's full history, kept as received, and what it measures."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, ProtoAggregate, event_of, meta_of
from lifeline.incident.model import CLOSED_ORDER, IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb


class IncidentHistory(ProtoAggregate):
    """The incident's events in order, folded as they arrive so a bad history is refused."""

    EVENT_TYPE = pb.HistoryEvent

    def when(self, wrapper: Message) -> None:
        if not hasattr(self, "events"):
            self.events: list[incident_pb2.IncidentEvent] = []
            self.state = IncidentState()
            self.imported: pb.HistoryImported | None = None
        kind, recorded = event_of(wrapper)
        if kind == "imported":
            self.imported = recorded
            return
        self.state.apply(recorded.event)
        self.events.append(recorded.event)

    @classmethod
    def begin(cls, event: incident_pb2.IncidentEvent, cause: Cause,
              now: datetime) -> IncidentHistory:
        meta = meta_of(event)
        if meta.sequence != 1:
            raise ValueError(f"history of {meta.aggregate_id} must start at event 1, "
                             f"not {meta.sequence}")
        return cls.start(UUID(meta.aggregate_id), "recorded",
                         pb.HistoryEventRecorded(event=event), cause, now)

    @classmethod
    def import_(cls, history_id: UUID, events: list[incident_pb2.IncidentEvent], digest: str,
                cause: Cause, now: datetime) -> IncidentHistory:
        """A history from a file, kept under an id of its own (never a live incident's)
        and opened by who imported what."""
        validate_history(events)
        history = cls.start(history_id, "imported", pb.HistoryImported(
            original_incident_id=meta_of(events[0]).aggregate_id, digest=digest,
            events=len(events)), cause, now)
        for event in events:
            history.record("recorded", pb.HistoryEventRecorded(event=event), cause, now)
        return history

    def append(self, event: incident_pb2.IncidentEvent, cause: Cause, now: datetime) -> bool:
        """Keep the next event; False for one already kept (a redelivery)."""
        if self.imported is not None:
            raise ValueError("an imported history takes no live events")
        if meta_of(event).sequence <= len(self.events):
            return False
        self.record("recorded", pb.HistoryEventRecorded(event=event), cause, now)
        return True


def validate_history(events: list[incident_pb2.IncidentEvent]) -> None:
    """A history from elsewhere: one incident, numbered 1..n, starting with its opening,
    every step replayable. Refuses naming the first bad event as events[i]."""
    if not events:
        raise InvalidArgument("events", "the history is empty")
    state = IncidentState()
    first_id = ""
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if event.WhichOneof("event") is None:
            raise InvalidArgument(where, "holds no event")
        meta = meta_of(event)
        first_id = first_id or meta.aggregate_id
        if meta.aggregate_id != first_id:
            raise InvalidArgument(where, f"belongs to incident {meta.aggregate_id!r}, not "
                                         f"{first_id!r}")
        if index == 0 and event_of(event)[0] not in ("opened", "reported"):
            raise InvalidArgument(where, "a history starts with the incident opened or "
                                         "reported")
        if not meta.HasField("occurred_at"):
            raise InvalidArgument(f"{where}.meta.occurred_at", "is required")
        try:
            state.apply(event)
        except (ValueError, AssertionError) as error:
            raise InvalidArgument(where, str(error) or "does not follow from the events "
                                                       "before it") from None


def _between(start: Timestamp, end: Timestamp) -> Duration | None:
    if not start.ByteSize() or not end.ByteSize():
        return None
    d = Duration()
    d.FromTimedelta(end.ToDatetime() - start.ToDatetime())
    return d


def _earliest(stamps: list[Timestamp]) -> Timestamp:
    present = [s for s in stamps if s.ByteSize()]
    return min(present, key=lambda s: (s.seconds, s.nanos)) if present else Timestamp()


def evaluate(incident_id: str, history: list[incident_pb2.IncidentEvent]) -> pb.Evaluation:
    """Phase durations in field time, from the history alone. After an escalation re-opened
    the response, containment and recovery are those that finally held: declared ->
    contained runs to the last containment, so the flare-up counts as response time."""
    v = IncidentState.replay(history).view
    first_assigned = _earliest([u.assigned_at for u in v.units])
    first_on_scene = _earliest([u.on_scene_at for u in v.units])
    end = v.closed_at if v.closed_at.ByteSize() else v.dismissed_at
    evaluation = pb.Evaluation(
        incident_id=incident_id, final_state=v.state, events=len(history),
        units_assigned=len(v.units), units_short=sum(s.count for s in v.shortfalls))
    orders = list(v.orders)
    first_order = _earliest([o.issued_at for o in orders])
    evaluation.orders_issued = len(orders)
    evaluation.orders_overdue = sum(1 for o in orders if o.overdue)
    if orders:
        evaluation.order_closure_rate = sum(
            o.status in CLOSED_ORDER for o in orders) / len(orders)
    latencies: dict[str, list[float]] = {}
    for o in orders:
        if o.acknowledged_at.ByteSize():
            latency = o.acknowledged_at.ToDatetime() - o.issued_at.ToDatetime()
            latencies.setdefault(o.department, []).append(latency.total_seconds())
    for department, seconds in latencies.items():
        evaluation.acknowledgement_seconds[department] = sum(seconds) / len(seconds)
    evaluation.response_time_target_minutes = v.plan.response_time_target_minutes
    on_scene = _between(v.declared_at, first_on_scene)
    if on_scene is not None and v.plan.response_time_target_minutes:
        evaluation.response_time_met = \
            on_scene.ToTimedelta().total_seconds() <= v.plan.response_time_target_minutes * 60
    for field, (start, stop) in {
        "warning_to_declared": (v.opened_at, v.declared_at),
        "declared_to_first_assignment": (v.declared_at, first_assigned),
        "declared_to_first_order": (v.declared_at, first_order),
        "response_time": (v.declared_at, first_on_scene),
        "declared_to_contained": (v.declared_at, v.contained_at),
        "recovery_duration": (v.recovery_started_at, v.recovered_at),
        "total_duration": (v.opened_at, end),
    }.items():
        span = _between(start, stop)
        if span is not None:
            getattr(evaluation, field).CopyFrom(span)
    return evaluation
