"""Review's domain: every incident's full history, kept as received, and what it measures."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, meta_of, stable_id
from lifeline.incident.phases import CLOSED_ORDER
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.plans import Plan, PlanError, load_plan
from lifeline.review.v1 import review_pb2 as pb

from lifeline_review import chain


class IncidentHistory(ProtoAggregate):
    """The incident's events in order, folded as they arrive so a bad history is refused."""

    EVENT_TYPE = pb.HistoryEvent

    def _begin(self) -> None:
        self.events: list[incident_pb2.IncidentEvent] = []
        self.state = IncidentState()
        self.imported: pb.HistoryImported | None = None

    def when(self, wrapper: Message) -> None:
        if not hasattr(self, "events"):
            self._begin()
        kind, recorded = event_of(wrapper)
        if kind == "imported":
            self.imported = recorded
            return
        self.state.apply(recorded.event)
        self.events.append(recorded.event)

    @classmethod
    def relayed(cls, wrapper: Message) -> bool:
        """Review publishes what it decides (an import), not its copy of each incident
        event: that is dispatch's event, already on dispatch's stream; echoing it doubled
        the bus's traffic for no reader."""
        return wrapper.WhichOneof("event") != "recorded"

    def when_all(self, wrappers: Sequence[Message]) -> None:
        """A replay's events: the incident's, in one pass of its fold. (An import is only
        ever a history's first event, `import_` starts it; one anywhere else reaches the
        fold as an empty event and is refused.)"""
        if not hasattr(self, "events"):
            self._begin()
            if wrappers and wrappers[0].WhichOneof("event") == "imported":
                self.when(wrappers[0])
                wrappers = wrappers[1:]
        events = [w.recorded.event for w in wrappers]  # type: ignore[attr-defined]
        self.state.extend(events)
        self.events += events

    def __deepcopy__(self, memo: dict[int, Any]) -> IncidentHistory:
        """The repository hands out a deep copy of a cached aggregate for each use. Kept
        events are never changed, so a copy shares them: copying a 10,000-event history
        message by message took longer than loading it from the store."""
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            clone.__dict__[name] = list(value) if name in ("events", "_chain") \
                else copy.deepcopy(value, memo)
        return clone

    def chain(self) -> list[str]:
        """The history's hash chain, one hex digest per event; extended only by the events
        kept since it was last asked for (a cached history is not hashed again)."""
        kept: list[str] = getattr(self, "_chain", [])
        events = self.events
        if len(kept) < len(events):
            longer, previous = list(kept), bytes.fromhex(kept[-1]) if kept else chain.GENESIS
            for event in events[len(kept):]:
                previous = chain.link(previous, event)
                longer.append(previous.hex())
            self._chain = kept = longer
        return kept

    def chained_events(self) -> list[incident_pb2.IncidentEvent]:
        """Copies of the events, each carrying its chain digest (what is handed out)."""
        out = []
        for event, digest in zip(self.events, self.chain(), strict=True):
            copy = incident_pb2.IncidentEvent()
            copy.CopyFrom(event)
            copy.chain_digest = digest
            out.append(copy)
        return out

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
        """A history from a file, checked by `validate_history`, kept under an id of its
        own (never a live incident's) and opened by who imported what."""
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


def validate_history(events: list[incident_pb2.IncidentEvent]
                     ) -> list[incident_pb2.IncidentEvent]:
    """A history from elsewhere: one incident, numbered 1..n, starting with its opening,
    its hash chain unbroken when it carries one, every step replayable. Refuses naming the
    first bad event as events[i]; returns the events as recorded (chain digests are handed
    out, not kept: the same history with or without them is the same history)."""
    if not events:
        raise InvalidArgument("events", "the history is empty")
    state = IncidentState()
    first_id = ""
    chained, previous = any(e.chain_digest for e in events), chain.GENESIS
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
        except ValueError as error:
            raise InvalidArgument(where, str(error) or "does not follow from the events "
                                                       "before it") from None
        if chained:
            # After the event's own checks: a dropped event is named as the gap it leaves.
            previous = chain.link(previous, event)
            if event.chain_digest != previous.hex():
                raise InvalidArgument(f"{where}.chain_digest", str(chain.Break(
                    index, meta.sequence, event.chain_digest, previous.hex())))
    return [_without_chain(e) for e in events]


def _without_chain(event: incident_pb2.IncidentEvent) -> incident_pb2.IncidentEvent:
    if not event.chain_digest:
        return event
    bare = incident_pb2.IncidentEvent()
    bare.CopyFrom(event)
    bare.ClearField("chain_digest")
    return bare


def _present(stamp: Timestamp | None) -> bool:
    return stamp is not None and stamp.ByteSize() > 0


def _between(start: Timestamp | None, end: Timestamp | None) -> Duration | None:
    if not _present(start) or not _present(end):
        return None
    assert start is not None and end is not None
    d = Duration()
    d.FromTimedelta(end.ToDatetime() - start.ToDatetime())
    return d


def _earliest(stamps: list[Timestamp | None]) -> Timestamp | None:
    present = [s for s in stamps if s is not None and _present(s)]
    return min(present, key=lambda s: (s.seconds, s.nanos)) if present else None


def _software_latency(evaluation: pb.Evaluation,
                      history: list[incident_pb2.IncidentEvent]) -> None:
    """The software's own share, in recorded time: from the (first) declaration being
    recorded to the resources request and the first assignment being recorded. Field time
    cannot show it: resources records an assignment at the field time of its cause."""
    recorded: dict[str, Timestamp] = {}
    for event in history:
        kind = str(event.WhichOneof("event"))
        if kind in ("declared", "resources_requested", "unit_assigned") and \
                kind not in recorded:
            recorded[kind] = meta_of(event).recorded_at
    declared = recorded.get("declared")
    if declared is None:
        return
    for field, step in (("recorded_declared_to_requested", "resources_requested"),
                        ("recorded_declared_to_first_assignment", "unit_assigned")):
        span = _between(declared, recorded.get(step, Timestamp()))
        if span is not None:
            getattr(evaluation, field).CopyFrom(span)


def evaluate(incident_id: str, history: list[incident_pb2.IncidentEvent],
             state: IncidentState | None = None) -> pb.Evaluation:
    """Phase durations in field time, from the history alone (state: the history already
    folded). After an escalation re-opened the response, containment and recovery are
    those that finally held: declared -> contained runs to the last containment, so the
    flare-up counts as response time."""
    v = state or IncidentState.replay(history)
    first_assigned = _earliest([u.assigned_at for u in v.units])
    first_on_scene = _earliest([u.on_scene_at for u in v.units])
    end = v.closed_at if _present(v.closed_at) else v.dismissed_at
    plan_id, target = (v.plan.plan_id, v.plan.response_time_target_minutes) if v.plan \
        else ("", 0)
    evaluation = pb.Evaluation(
        incident_id=incident_id, final_state=v.state, events=len(history),
        units_assigned=len(v.units), units_short=sum(v.shortfalls.values()),
        category=v.category, hazard_type=v.hazard_type or v.hazard, grade=v.grade,
        grid_cell=v.grid_cell, opened_at=v.opened_at, plan_id=plan_id,
        from_warning=bool(v.warning_id))
    _software_latency(evaluation, history)
    orders = list(v.orders)
    first_order = _earliest([o.issued_at for o in orders])
    evaluation.orders_issued = len(orders)
    evaluation.orders_overdue = sum(1 for o in orders if o.overdue)
    if orders:
        evaluation.order_closure_rate = sum(
            o.status in CLOSED_ORDER for o in orders) / len(orders)
    latencies: dict[str, list[float]] = {}
    for o in orders:
        if _present(o.acknowledged_at):
            assert o.acknowledged_at is not None
            latency = o.acknowledged_at.ToDatetime() - o.issued_at.ToDatetime()
            latencies.setdefault(o.department, []).append(latency.total_seconds())
    for department, seconds in latencies.items():
        evaluation.acknowledgement_seconds[department] = sum(seconds) / len(seconds)
    evaluation.response_time_target_minutes = target
    on_scene = _between(v.declared_at, first_on_scene)
    if on_scene is not None and target:
        evaluation.response_time_met = on_scene.ToTimedelta().total_seconds() <= target * 60
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


def as_of(history: list[incident_pb2.IncidentEvent], when: datetime
          ) -> tuple[IncidentState | None, int]:
    """The incident as it stood at field time `when` (its events up to and including it;
    an incident's events run forward in field time), and how many had happened; None
    before it opened."""
    state, count = IncidentState(), 0
    for event in history:
        if from_timestamp(meta_of(event).occurred_at) > when:
            break
        state.apply(event)
        count += 1
    return (state if count else None), count


PLAN_FILE_LIMIT = 64 * 1024


def check_plan_text(plan_id: str, plan_toml: bytes, in_force: Plan | None) -> Plan:
    """The proposed plan file, read and checked as dispatch would load it: the plan schema
    and rules, the same plan id, and the version after the one in force."""
    if in_force is None:
        raise InvalidArgument("plan_id", f"no plan {plan_id!r} is in force")
    if len(plan_toml) > PLAN_FILE_LIMIT:
        raise InvalidArgument("plan_toml", f"at most {PLAN_FILE_LIMIT} bytes")
    with tempfile.TemporaryDirectory(prefix="lifeline-plan-") as folder:
        path = Path(folder) / f"{plan_id}.toml"
        path.write_bytes(plan_toml)
        try:
            plan = load_plan(path)
        except PlanError as error:
            raise InvalidArgument(f"plan_toml: {error.field}", error.problem) from None
    if plan.id != plan_id:
        raise InvalidArgument("plan_toml: id", f"is {plan.id!r}, not the plan {plan_id!r}")
    if plan.version != in_force.version + 1:
        raise InvalidArgument("plan_toml: version", f"must be {in_force.version + 1}, the "
                                                    f"version after the one in force "
                                                    f"({in_force.version}), not {plan.version}")
    return plan


class PlanRevision(ProtoAggregate):
    """A proposed revision of an emergency plan with its evidence, until an evaluator
    (not the proposer: four eyes) accepts or rejects it."""

    EVENT_TYPE = pb.PlanRevisionEvent

    def when(self, wrapper: Message) -> None:
        kind, event = event_of(wrapper)
        meta = event.meta
        if kind == "proposed":
            self.view = pb.PlanRevision(
                id=str(self.id), plan_id=event.plan_id, from_version=event.from_version,
                to_version=event.to_version, plan_toml=event.plan_toml,
                content_hash=event.content_hash, reason=meta.reason,
                incident_ids=event.incident_ids, findings=event.findings,
                status=pb.PLAN_REVISION_STATUS_PROPOSED, proposed_by=meta.actor,
                proposed_at=meta.occurred_at)
        elif kind == "decided":
            self.view.status = pb.PLAN_REVISION_STATUS_ACCEPTED if event.accepted \
                else pb.PLAN_REVISION_STATUS_REJECTED
            self.view.decided_by = meta.actor
            self.view.decided_at.CopyFrom(meta.occurred_at)
            self.view.decision_reason = meta.reason

    @classmethod
    def propose(cls, plan_id: str, plan_toml: bytes, in_force: Plan | None,
                incident_ids: list[str], findings: list[pb.Finding], cause: Cause,
                now: datetime) -> PlanRevision:
        if not cause.reason.strip():
            raise InvalidArgument("reason", "a proposal says why (the finding in words)")
        plan = check_plan_text(plan_id, plan_toml, in_force)
        assert in_force is not None
        revision_id = stable_id("plan-revision", plan_id, plan.content_hash)
        return cls.start(revision_id, "proposed", pb.PlanRevisionProposed(
            plan_id=plan_id, from_version=in_force.version, to_version=plan.version,
            plan_toml=plan_toml, content_hash=plan.content_hash, incident_ids=incident_ids,
            findings=findings), cause, now)

    def decide(self, accept: bool, cause: Cause, now: datetime) -> None:
        if self.view.status != pb.PLAN_REVISION_STATUS_PROPOSED:
            decided = pb.PlanRevisionStatus.Name(self.view.status).rsplit("_", 1)[-1]
            raise RuleViolation("decide-once", f"revision {self.id} was already "
                                               f"{decided.lower()}")
        if cause.actor == self.view.proposed_by:
            raise RuleViolation("four-eyes", f"{cause.actor} proposed this revision; another "
                                              "evaluator decides it")
        if not cause.reason.strip():
            raise InvalidArgument("reason", "a decision says why")
        self.record("decided", pb.PlanRevisionDecided(accepted=accept), cause, now)
