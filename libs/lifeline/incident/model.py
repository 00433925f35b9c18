"""The Incident: one model that dispatch writes and review replays.

`IncidentState` is a pure fold over `lifeline.incident.v1.IncidentEvent` messages; review
uses it alone to replay a history. `Incident` is the event-sourced aggregate dispatch keeps:
its commands check the lifecycle rules and record events, which the same fold applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from google.protobuf.message import Message

from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, NotFound, RuleViolation
from lifeline.events import (
    Cause,
    ProtoAggregate,
    from_timestamp,
    stable_id,
    to_timestamp,
)
from lifeline.incident.v1 import incident_pb2 as pb

S = pb.IncidentState
ACTIVE = (S.INCIDENT_STATE_DECLARED, S.INCIDENT_STATE_RESPONDING, S.INCIDENT_STATE_CONTAINED,
          S.INCIDENT_STATE_RECOVERING, S.INCIDENT_STATE_RECOVERED)
OPEN = (S.INCIDENT_STATE_WARNING, *ACTIVE)
#: A unit on an incident: from assignment until it is released.
DEPLOYED = (common_pb2.UNIT_STATUS_ASSIGNED, common_pb2.UNIT_STATUS_EN_ROUTE,
            common_pb2.UNIT_STATUS_ON_SCENE, common_pb2.UNIT_STATUS_TRANSPORTING,
            common_pb2.UNIT_STATUS_AT_HOSPITAL)
CLOSED_ORDER = (pb.ORDER_STATUS_VERIFIED, pb.ORDER_STATUS_CANCELLED)
UNFINISHED_ORDER = (pb.ORDER_STATUS_ISSUED, pb.ORDER_STATUS_ACKNOWLEDGED,
                    pb.ORDER_STATUS_IN_PROGRESS)
#: States an escalation re-opens: lives at risk again mean the incident is not contained.
AFTER_CONTAINMENT = (S.INCIDENT_STATE_CONTAINED, S.INCIDENT_STATE_RECOVERING,
                     S.INCIDENT_STATE_RECOVERED)


@dataclass(frozen=True)
class PlanOrder:
    """An order the plan gives at a grade."""

    id: str
    department: str
    tier: int
    instruction: str
    life_safety: bool
    ack_minutes: int
    complete_minutes: int


@dataclass(frozen=True)
class Response:
    """What the plan in force says an incident of one grade needs."""

    units: Sequence[pb.UnitRequirement]
    plan_id: str = ""
    plan_version: int = 0
    content_hash: str = ""
    response_time_target_minutes: int = 0
    notify: Sequence[str] = ()
    materials: Sequence[pb.Material] = ()
    orders: Sequence[PlanOrder] = ()

    def count(self, unit_kind: str) -> int:
        return sum(u.count for u in self.units if u.unit_kind == unit_kind)


def grade_name(grade: int) -> str:
    return pb.Grade.Name(grade).removeprefix("GRADE_")  # type: ignore[arg-type]


def state_name(state: int) -> str:
    return pb.IncidentState.Name(state).removeprefix("INCIDENT_STATE_")  # type: ignore[arg-type]


class IncidentState:
    """The incident as its history so far says it is.

    `apply` is the one fold: dispatch runs it as it records, review as it replays (tens of
    thousands of events a second across incidents), so it is written for speed: one
    precompiled step per event type, found in a dict, and indexes of units, orders and
    tasks by id instead of scans of the view."""

    __slots__ = ("_offset", "_orders", "_tasks", "_units", "view")

    def __init__(self) -> None:
        self.view = pb.Incident()
        #: The field time offset last written, in microseconds (most steps repeat it).
        self._offset: int | None = None
        #: Each unit's latest stint in view.units, and the first order and recovery task
        #: with each id in view.orders / view.recovery_tasks: the view's own elements, held
        #: (indexing a repeated field costs more than most steps).
        self._units: dict[str, pb.IncidentUnit] = {}
        self._orders: dict[str, pb.Order] = {}
        self._tasks: dict[str, pb.RecoveryTask] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> IncidentState:
        """A copy with its own view, and indexes into that view (not into this one)."""
        clone = IncidentState()
        clone.view.CopyFrom(self.view)
        clone._offset = self._offset
        v = clone.view
        clone._units = {u.unit_id: u for u in v.units}
        clone._orders = {}
        for order in v.orders:
            clone._orders.setdefault(order.id, order)
        for task in v.recovery_tasks:
            clone._tasks.setdefault(task.id, task)
        memo[id(self)] = clone
        return clone

    @classmethod
    def replay(cls, events: Iterable[pb.IncidentEvent]) -> IncidentState:
        state = cls()
        state.extend(list(events))
        return state

    def unit(self, unit_id: str) -> pb.IncidentUnit | None:
        """The unit's latest stint with the incident (a released unit may come back)."""
        return self._units.get(unit_id)

    def deployed_units(self) -> list[pb.IncidentUnit]:
        return [u for u in self.view.units if not u.released]

    def apply(self, wrapper: Message) -> None:
        """Apply the incident's next event."""
        self.extend((wrapper,))

    def extend(self, wrappers: Sequence[Message]) -> None:
        """Apply the incident's next events in order: what `apply` does for each, with the
        incident's clock (version, updated_at, field_time_offset) written once, after the
        last (or the one that failed), not once per event. The loop does only what every
        event needs: a replay across incidents runs it hundreds of thousands of times a
        second, and each access to a message costs about as much as a step's own work."""
        v = self.view
        start = version = v.version
        steps, which = _STEPS, _which
        try:
            for wrapper in wrappers:
                field = which(wrapper, "event")
                step = steps.get(field)  # type: ignore[arg-type]
                if step is None:
                    raise ValueError(f"empty {wrapper.DESCRIPTOR.name}")
                event = getattr(wrapper, field)  # type: ignore[arg-type]
                meta = event.meta
                if meta.sequence != version + 1:
                    raise ValueError(f"event {meta.sequence} of incident {meta.aggregate_id} "
                                     f"follows event {version}: the history has a gap or a "
                                     "repeat")
                version += 1
                step(self, v, event, meta)
        finally:
            if version != start:
                self._clock(wrappers, version - start)

    def _clock(self, wrappers: Sequence[Message], applied: int) -> None:
        """After the first `applied` of `wrappers`: the version, when the incident last
        changed (the last event), and the field clock's offset, from the last event that
        moves it (not the deadline watch's own steps, or each would slow it by the watch's
        lag) and says when it was recorded (all but hand-written histories)."""
        v = self.view
        v.version += applied
        for n in range(applied - 1, -1, -1):
            wrapper = wrappers[n]
            field = str(_which(wrapper, "event"))
            meta: common_pb2.EventMeta = getattr(wrapper, field).meta
            if n == applied - 1:
                v.updated_at.CopyFrom(meta.occurred_at)
            if field != "order_overdue" and meta.HasField("recorded_at"):
                self._set_offset(meta)
                return

    def _set_offset(self, meta: common_pb2.EventMeta) -> None:
        """field_time_offset: occurred - recorded to the microsecond, in integers (through
        datetimes this was a third of the time a replay spent per event), normalised as
        Duration.FromMicroseconds does (seconds and nanos of one sign)."""
        at, recorded = meta.occurred_at, meta.recorded_at
        offset = ((at.seconds - recorded.seconds) * 1_000_000
                  + at.nanos // 1000 - recorded.nanos // 1000)
        if offset != self._offset:
            self._offset = offset
            seconds, micros = divmod(offset, 1_000_000)
            if seconds < 0 and micros:
                seconds, micros = seconds + 1, micros - 1_000_000
            duration = self.view.field_time_offset
            duration.seconds, duration.nanos = seconds, micros * 1000

    def _order_of(self, event: Any) -> pb.Order:
        order = self._orders.get(event.order_id)
        if order is None:
            raise ValueError(f"order {event.order_id!r} was never issued")
        return order

    def _unit_of(self, event: Any) -> pb.IncidentUnit:
        unit = self._units.get(event.unit_id)
        if unit is None:
            raise ValueError(f"unit {event.unit_id!r} was never assigned to the incident")
        return unit

    def order(self, order_id: str) -> pb.Order | None:
        return self._orders.get(order_id)

    def task(self, task_id: str) -> pb.RecoveryTask | None:
        return self._tasks.get(task_id)

    def open_orders(self) -> list[pb.Order]:
        """Orders not yet closed: neither verified by the commander nor cancelled."""
        return [o for o in self.view.orders if o.status not in CLOSED_ORDER]

    def committed(self, unit_kind: str) -> int:
        """Units of a kind requested and not (yet) known to be missing or released."""
        v = self.view
        requested = sum(r.count for r in v.requested if r.unit_kind == unit_kind)
        short = sum(r.count for r in v.shortfalls if r.unit_kind == unit_kind)
        released = sum(1 for u in v.units if u.unit_kind == unit_kind and u.released)
        return requested - short - released

    def committed_material(self, name: str) -> int:
        """A material requested and not (yet) known to be missing. What was reserved stays
        committed whether it is consumed or returned: a grade asks for it once."""
        v = self.view
        requested = sum(m.quantity for m in v.materials_requested if m.name == name)
        return requested - sum(m.quantity for m in v.material_shortfalls if m.name == name)


def field_time_offset(view: pb.Incident) -> timedelta:
    """How far the incident's field time ran ahead of the service clock at its latest
    reported step (negative for a history told in past field time)."""
    return view.field_time_offset.ToTimedelta()


def next_deadline(view: pb.Incident) -> datetime | None:
    """The field time the incident's next pending deadline falls due, if any (what the
    deadline watch looks for, kept on the read model so it reads only incidents due)."""
    if view.state not in ACTIVE:
        return None
    pending = [from_timestamp(due_at) for order in view.orders
               for due_at, waiting, deadline in (
                   (order.acknowledge_by, order.status == pb.ORDER_STATUS_ISSUED,
                    pb.DEADLINE_ACKNOWLEDGEMENT),
                   (order.complete_by, order.status in UNFINISHED_ORDER,
                    pb.DEADLINE_COMPLETION))
               if waiting and deadline not in order.overdue]
    return min(pending, default=None)


def due_deadlines(view: pb.Incident, field_now: datetime) -> list[tuple[str, int, Any]]:
    """Deadlines passed unmet by field time field_now and not yet recorded as overdue:
    (order id, which deadline, when it fell due), earliest first."""
    if view.state not in ACTIVE:
        return []
    due = []
    for order in view.orders:
        for deadline, due_at, pending in (
                (pb.DEADLINE_ACKNOWLEDGEMENT, order.acknowledge_by,
                 order.status == pb.ORDER_STATUS_ISSUED),
                (pb.DEADLINE_COMPLETION, order.complete_by, order.status in UNFINISHED_ORDER)):
            if pending and deadline not in order.overdue and \
                    from_timestamp(due_at) <= field_now:
                due.append((order.id, deadline, due_at))
    return sorted(due, key=lambda d: (d[2].seconds, d[2].nanos))


def _add_material(materials: Any, material: pb.Material) -> None:
    for m in materials:
        if m.name == material.name:
            m.quantity += material.quantity
            return
    materials.add(name=material.name, quantity=material.quantity, unit=material.unit)


def _add(requirements: Any, unit_kind: str, count: int) -> None:
    for r in requirements:
        if r.unit_kind == unit_kind:
            r.count += count
            return
    requirements.add(unit_kind=unit_kind, count=count)


# ---- the fold's steps, one per event type: (state, its view, the event, its meta) ----
# Enum values as the module's constants: through the enum's wrapper (S.X) each costs a
# Python-level __getattr__, more than the rest of a step.

Meta = common_pb2.EventMeta
Step = Callable[[IncidentState, pb.Incident, Any, Meta], None]


def _opened(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.id = meta.aggregate_id
    v.state = pb.INCIDENT_STATE_WARNING
    v.hazard, v.warning_id, v.grid_cell = event.hazard, event.warning_id, event.grid_cell
    v.warning_level = event.level
    v.location.CopyFrom(event.location)
    v.opened_at.CopyFrom(meta.occurred_at)


def _reported(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.id = meta.aggregate_id
    v.state = pb.INCIDENT_STATE_WARNING
    v.hazard, v.grid_cell = event.hazard, event.grid_cell
    v.description, v.reporter = event.description, event.reporter
    v.location.CopyFrom(event.location)
    v.opened_at.CopyFrom(meta.occurred_at)


def _warning_level_changed(s: IncidentState, v: pb.Incident, event: Any, meta: Meta
                           ) -> None:
    v.warning_level = event.level


def _warning_cleared(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.warning_level = common_pb2.WARNING_LEVEL_NONE


def _declared(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.state = pb.INCIDENT_STATE_DECLARED
    v.category, v.hazard_type, v.grade = event.category, event.hazard_type, event.grade
    v.declared_at.CopyFrom(meta.occurred_at)


def _resources_requested(s: IncidentState, v: pb.Incident, event: Any, meta: Meta
                         ) -> None:
    for need in event.requirements:
        _add(v.requested, need.unit_kind, need.count)
    for m in event.materials:
        _add_material(v.materials_requested, m)


def _material_reserved(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.materials_reserved.add(request_id=event.request_id, depot_id=event.depot_id,
                             material=event.material, distance_km=event.distance_km)


def _material_shortfall(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    _add_material(v.material_shortfalls, event.material)


def _material_consumed(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    _add_material(v.materials_consumed, event.material)


def _material_returned(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    _add_material(v.materials_returned, event.material)


def _unit_assigned(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    if v.state == pb.INCIDENT_STATE_DECLARED:
        v.state = pb.INCIDENT_STATE_RESPONDING
    unit = s._units[event.unit_id] = v.units.add()
    unit.unit_id, unit.unit_kind = event.unit_id, event.unit_kind
    unit.status, unit.distance_km = common_pb2.UNIT_STATUS_ASSIGNED, event.distance_km
    unit.assigned_at.CopyFrom(meta.occurred_at)


def _resource_shortfall(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    _add(v.shortfalls, event.unit_kind, event.missing)


def _unit_status_reported(s: IncidentState, v: pb.Incident, event: Any, meta: Meta
                          ) -> None:
    unit = s._unit_of(event)
    status = unit.status = event.status
    if status == common_pb2.UNIT_STATUS_ON_SCENE and not unit.HasField("on_scene_at"):
        unit.on_scene_at.CopyFrom(meta.occurred_at)


def _unit_released(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    unit = s._unit_of(event)
    unit.released = True
    unit.status = common_pb2.UNIT_STATUS_AVAILABLE


def _phase(state: pb.IncidentState.ValueType, stamp: str) -> Step:
    """The step of an event that moves the incident to a phase and stamps when it did."""
    def step(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
        v.state = state
        getattr(v, stamp).CopyFrom(meta.occurred_at)

    return step


def _grade_changed(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.grade = event.to_grade


def _response_reopened(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.state = pb.INCIDENT_STATE_RESPONDING
    v.times_reopened += 1
    # The phases after containment start over; they are recorded again as they hold.
    for phase in ("contained_at", "recovery_started_at", "recovered_at"):
        v.ClearField(phase)


def _plan_activated(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    plan = v.plan
    plan.Clear()
    plan.plan_id, plan.plan_version = event.plan_id, event.plan_version
    plan.content_hash, plan.grade = event.content_hash, event.grade
    plan.response_time_target_minutes = event.response_time_target_minutes
    plan.departments_notified.extend(event.departments_notified)
    plan.materials.extend(event.materials)


def _commander_assigned(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.commander = event.commander


def _situation_reported(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.situation.CopyFrom(pb.Situation(
        dead=event.dead, injured=event.injured, missing=event.missing,
        affected=event.affected, evacuated=event.evacuated, area_km2=event.area_km2,
        text=event.text, reported_at=meta.occurred_at))


def _recovery_task_added(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    task = v.recovery_tasks.add(id=event.task_id, kind=event.kind, owner=event.owner,
                                description=event.description)
    s._tasks.setdefault(event.task_id, task)


def _recovery_task_completed(s: IncidentState, v: pb.Incident, event: Any, meta: Meta
                             ) -> None:
    task = s._tasks.get(event.task_id)
    if task is None:
        raise ValueError(f"recovery task {event.task_id!r} was never added")
    task.done = True
    task.done_at.CopyFrom(meta.occurred_at)


def _reviewed(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    v.reviewed = True
    v.reviewed_at.CopyFrom(meta.occurred_at)


def _order_issued(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    # Field by field: a message given to add() as a keyword costs more than a CopyFrom.
    order = v.orders.add()
    order.id, order.department, order.unit_id = event.order_id, event.department, event.unit_id
    order.tier, order.instruction = event.tier, event.instruction
    order.life_safety, order.status = event.life_safety, pb.ORDER_STATUS_ISSUED
    order.issued_by, order.plan_order_id = meta.actor, event.plan_order_id
    order.issued_at.CopyFrom(meta.occurred_at)
    order.acknowledge_by.CopyFrom(event.acknowledge_by)
    order.complete_by.CopyFrom(event.complete_by)
    s._orders.setdefault(event.order_id, order)


def _order_acknowledged(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    order = s._order_of(event)
    order.status = pb.ORDER_STATUS_ACKNOWLEDGED
    order.acknowledged_at.CopyFrom(meta.occurred_at)


def _order_progress_reported(s: IncidentState, v: pb.Incident, event: Any, meta: Meta
                             ) -> None:
    order = s._order_of(event)
    order.status = pb.ORDER_STATUS_IN_PROGRESS
    order.percent, order.last_note = event.percent, event.note


def _order_completed(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    order = s._order_of(event)
    order.status = pb.ORDER_STATUS_COMPLETED
    order.percent = 100
    order.completed_at.CopyFrom(meta.occurred_at)


def _order_verified(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    order = s._order_of(event)
    order.status = pb.ORDER_STATUS_VERIFIED
    order.verified_at.CopyFrom(meta.occurred_at)


def _order_cancelled(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    s._order_of(event).status = pb.ORDER_STATUS_CANCELLED


def _order_overdue(s: IncidentState, v: pb.Incident, event: Any, meta: Meta) -> None:
    s._order_of(event).overdue.append(event.deadline)


#: `wrapper.WhichOneof`, looked up once (through each message, a field lookup by name first).
_which = cast(Callable[[Message, str], str | None], pb.IncidentEvent.WhichOneof)
#: Each event type (the wrapper's oneof field) and the step that applies it.
_STEPS: dict[str, Step] = {
    "opened": _opened,
    "reported": _reported,
    "warning_level_changed": _warning_level_changed,
    "warning_cleared": _warning_cleared,
    "declared": _declared,
    "resources_requested": _resources_requested,
    "unit_assigned": _unit_assigned,
    "resource_shortfall": _resource_shortfall,
    "unit_status_reported": _unit_status_reported,
    "unit_released": _unit_released,
    "contained": _phase(pb.INCIDENT_STATE_CONTAINED, "contained_at"),
    "recovery_started": _phase(pb.INCIDENT_STATE_RECOVERING, "recovery_started_at"),
    "recovered": _phase(pb.INCIDENT_STATE_RECOVERED, "recovered_at"),
    "closed": _phase(pb.INCIDENT_STATE_CLOSED, "closed_at"),
    "dismissed": _phase(pb.INCIDENT_STATE_DISMISSED, "dismissed_at"),
    "grade_changed": _grade_changed,
    "plan_activated": _plan_activated,
    "commander_assigned": _commander_assigned,
    "order_issued": _order_issued,
    "order_acknowledged": _order_acknowledged,
    "order_progress_reported": _order_progress_reported,
    "order_completed": _order_completed,
    "order_verified": _order_verified,
    "order_cancelled": _order_cancelled,
    "order_overdue": _order_overdue,
    "situation_reported": _situation_reported,
    "recovery_task_added": _recovery_task_added,
    "recovery_task_completed": _recovery_task_completed,
    "reviewed": _reviewed,
    "response_reopened": _response_reopened,
    "material_reserved": _material_reserved,
    "material_shortfall": _material_shortfall,
    "material_consumed": _material_consumed,
    "material_returned": _material_returned,
}


def parse_incident_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidArgument("incident_id", f"{text!r} is not an incident id (a UUID)") from None


def incident_id_for_warning(warning_id: str) -> UUID:
    """One incident per warning, however often the warning is delivered."""
    return stable_id("incident-for-warning", warning_id)


class Incident(ProtoAggregate):
    """The event-sourced incident: commands check the rules, events change the state."""

    EVENT_TYPE = pb.IncidentEvent
    CONTINUES_ORIGIN_TRACE = True

    def when(self, wrapper: Message) -> None:
        if not hasattr(self, "state"):
            self.state = IncidentState()
        self.state.apply(wrapper)

    @property
    def view(self) -> pb.Incident:
        return self.state.view

    def record(self, field: str, event: Message, cause: Cause, now: datetime) -> None:
        last = from_timestamp(self.view.updated_at)
        if cause.occurred_at < last:
            # Reached only by a caller's command (other causes are clamped first), before it
            # recorded anything: a command's steps share its field time.
            raise RuleViolation("time-runs-forward",
                                f"{field.replace('_', ' ')} at {cause.occurred_at.isoformat()} "
                                f"is before the incident's last step at {last.isoformat()}")
        if field != "order_overdue":
            # A deadline passed before this step is recorded first, at the time it fell due,
            # so a late acknowledgement is still overdue and the history stays in time order.
            self.record_overdue(cause.occurred_at, now)
        # Every step of an incident belongs to the chain its warning (or report) started.
        if not cause.correlation_id:
            cause = replace(cause, correlation_id=self.view.warning_id or str(self.id))
        super().record(field, event, cause, now)

    def _not_before_last_step(self, cause: Cause) -> Cause:
        """Another service's event is never refused (that would wedge the inbox): it keeps
        its field time, clamped so it never goes before the incident's last step."""
        last = from_timestamp(self.view.updated_at)
        return replace(cause, occurred_at=last) if cause.occurred_at < last else cause

    # ---- opening ----

    @classmethod
    def open_for_warning(cls, warning_id: str, hazard: str, level: int,
                         location: common_pb2.GeoPoint, grid_cell: str, cause: Cause,
                         now: datetime) -> Incident:
        event = pb.IncidentOpened(warning_id=warning_id, hazard=hazard, level=level,  # type: ignore[arg-type]
                                  location=location, grid_cell=grid_cell)
        cause = replace(cause, correlation_id=cause.correlation_id or warning_id)
        return cls.start(incident_id_for_warning(warning_id), "opened", event, cause, now)

    @classmethod
    def report(cls, incident_id: UUID, hazard: str, location: common_pb2.GeoPoint,
               description: str, reporter: str, grid_cell: str, cause: Cause,
               now: datetime) -> Incident:
        event = pb.IncidentReported(hazard=hazard, location=location, description=description,
                                    reporter=reporter, grid_cell=grid_cell)
        cause = replace(cause, correlation_id=cause.correlation_id or str(incident_id))
        return cls.start(incident_id, "reported", event, cause, now)

    # ---- the warning behind it ----

    def change_warning_level(self, level: int, cause: Cause, now: datetime) -> None:
        if self.view.state in OPEN and level != self.view.warning_level:
            self.record("warning_level_changed", pb.WarningLevelChanged(
                warning_id=self.view.warning_id, level=level),  # type: ignore[arg-type]
                self._not_before_last_step(cause), now)

    def clear_warning(self, cause: Cause, now: datetime) -> None:
        if self.view.state in OPEN and self.view.warning_level != common_pb2.WARNING_LEVEL_NONE:
            self.record("warning_cleared", pb.WarningCleared(warning_id=self.view.warning_id),
                        self._not_before_last_step(cause), now)

    # ---- response ----

    def declare(self, category: int, hazard_type: str, grade: int, response: Response,
                cause: Cause, now: datetime) -> None:
        """Declare with a grade: the declaring officer takes command and the plan for the
        grade comes into force (units requested, orders issued)."""
        self._require("declare-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be declared")
        self.record("declared", pb.IncidentDeclared(category=category, hazard_type=hazard_type,  # type: ignore[arg-type]
                                                    grade=grade), cause, now)  # type: ignore[arg-type]
        cause = replace(cause, causation_id=f"{self.id}/{self.version}")  # the declaration
        self.record("commander_assigned", pb.CommanderAssigned(commander=cause.actor), cause, now)
        self._put_in_force(grade, response, cause, now)

    def regrade(self, grade: int, response: Response, cause: Cause, now: datetime) -> None:
        """Escalate or de-escalate: escalation adds what the higher grade needs beyond what
        is committed; de-escalation releases the surplus units."""
        self._require("regrade-while-active", ACTIVE,
                      "the grade changes only while the incident is active")
        if not cause.reason.strip():
            raise InvalidArgument("action.reason", "a grade change needs a reason")
        if grade == self.view.grade:
            raise RuleViolation("regrade-changes-grade", f"the incident is already grade "
                                                         f"{grade_name(grade)}")
        previous, state = self.view.grade, self.view.state
        self.record("grade_changed", pb.GradeChanged(from_grade=previous, to_grade=grade),  # type: ignore[arg-type]
                    cause, now)
        cause = replace(cause, causation_id=f"{self.id}/{self.version}")  # the grade change
        if grade < previous and state in AFTER_CONTAINMENT:
            # A flare-up (复燃): the response re-opens before the higher grade's orders go
            # out, so its life-safety orders never stand open on a contained incident.
            self.record("response_reopened", pb.ResponseReopened(
                from_state=state, from_grade=previous, to_grade=grade),  # type: ignore[arg-type]
                cause, now)
        if grade > previous:  # a larger number is less severe: release the surplus
            for kind in {u.unit_kind for u in self.state.deployed_units()}:
                surplus = [u for u in self.state.deployed_units() if u.unit_kind == kind]
                for unit in surplus[response.count(kind):][::-1]:
                    self.record("unit_released", pb.UnitReleased(unit_id=unit.unit_id), cause,
                                now)
        self._put_in_force(grade, response, cause, now)

    def _put_in_force(self, grade: int, response: Response, cause: Cause,
                      now: datetime) -> None:
        if response.plan_id:
            self.record("plan_activated", pb.PlanActivated(
                plan_id=response.plan_id, plan_version=response.plan_version,
                content_hash=response.content_hash, grade=grade,  # type: ignore[arg-type]
                response_time_target_minutes=response.response_time_target_minutes,
                departments_notified=response.notify, units=response.units,
                materials=response.materials), cause, now)
        extra = [pb.UnitRequirement(unit_kind=u.unit_kind,
                                    count=u.count - self.state.committed(u.unit_kind))
                 for u in response.units if u.count > self.state.committed(u.unit_kind)]
        # Materials like units: only what the grade adds to what is already committed.
        materials = [pb.Material(name=m.name, unit=m.unit,
                                 quantity=m.quantity - self.state.committed_material(m.name))
                     for m in response.materials
                     if m.quantity > self.state.committed_material(m.name)]
        if extra or materials:
            request_id = str(stable_id(str(self.id), "request", str(self.version + 1)))
            self.record("resources_requested", pb.ResourcesRequested(
                request_id=request_id, requirements=extra, location=self.view.location,
                materials=materials), cause, now)
        issued = {o.plan_order_id for o in self.view.orders if o.plan_order_id}
        for order in response.orders:
            if order.id not in issued:
                self._issue(order.department, "", order.tier, order.instruction,
                            order.life_safety, order.ack_minutes, order.complete_minutes,
                            cause, now, plan_order_id=order.id)

    def assign_unit(self, request_id: str, unit_id: str, unit_kind: str, distance_km: float,
                    cause: Cause, now: datetime) -> bool:
        """Record a unit resources gave us; False when it changes nothing (a repeat)."""
        unit = self.state.unit(unit_id)
        if self.view.state not in ACTIVE or (unit is not None and not unit.released):
            return False
        self.record("unit_assigned", pb.UnitAssigned(request_id=request_id, unit_id=unit_id,
                                                     unit_kind=unit_kind,
                                                     distance_km=distance_km),
                    self._not_before_last_step(cause), now)
        return True

    def record_shortfall(self, request_id: str, unit_kind: str, missing: int, cause: Cause,
                         now: datetime) -> None:
        if self.view.state in ACTIVE:
            self.record("resource_shortfall", pb.ResourceShortfall(
                request_id=request_id, unit_kind=unit_kind, missing=missing),
                self._not_before_last_step(cause), now)

    def reserve_material(self, request_id: str, depot_id: str, material: pb.Material,
                         distance_km: float, cause: Cause, now: datetime) -> None:
        """Record materials a depot reserved for the incident (resources' answer)."""
        if self.view.state in ACTIVE:
            self.record("material_reserved", pb.MaterialReserved(
                request_id=request_id, depot_id=depot_id, material=material,
                distance_km=distance_km), self._not_before_last_step(cause), now)

    def record_material_shortfall(self, request_id: str, material: pb.Material, cause: Cause,
                                  now: datetime) -> None:
        """No depot could cover a material: material.quantity is what is missing."""
        if self.view.state in ACTIVE:
            self.record("material_shortfall", pb.MaterialShortfall(
                request_id=request_id, material=material), self._not_before_last_step(cause),
                now)

    def record_material_use(self, depot_id: str, material: pb.Material, consumed: bool,
                            cause: Cause, now: datetime) -> bool:
        """A depot's department reported materials the incident held used up (consumed) or
        brought back; recorded while the incident is active (after closure, resources puts
        back what it still held, and the incident takes no more steps)."""
        if self.view.state not in ACTIVE or not material.quantity:
            return False
        field, event_type = (("material_consumed", pb.MaterialConsumed) if consumed
                             else ("material_returned", pb.MaterialReturned))
        self.record(field, event_type(depot_id=depot_id, material=material),
                    self._not_before_last_step(cause), now)
        return True

    def report_unit_status(self, unit_id: str, status: int, cause: Cause, now: datetime) -> bool:
        unit = self.state.unit(unit_id)
        if unit is None or unit.released or unit.status == status or status not in DEPLOYED:
            return False
        self.record("unit_status_reported", pb.UnitStatusReported(unit_id=unit_id, status=status),  # type: ignore[arg-type]
                    self._not_before_last_step(cause), now)
        return True

    def release_unit(self, unit_id: str, cause: Cause, now: datetime) -> bool:
        """Resources freed a unit (it reported available): the incident lets it go."""
        unit = self.state.unit(unit_id)
        if self.view.state not in OPEN or unit is None or unit.released:
            return False
        self.record("unit_released", pb.UnitReleased(unit_id=unit_id),
                    self._not_before_last_step(cause), now)
        return True

    def contain(self, cause: Cause, now: datetime) -> None:
        self._require("contain-after-declare",
                      (S.INCIDENT_STATE_DECLARED, S.INCIDENT_STATE_RESPONDING),
                      "an incident is contained only while it is declared or responding")
        open_life_safety = [o.id for o in self.state.open_orders()
                            if o.life_safety and o.status in UNFINISHED_ORDER]
        if open_life_safety:
            raise RuleViolation("contain-after-life-safety-orders",
                                "life-safety orders still open: " + ", ".join(open_life_safety))
        self.record("contained", pb.IncidentContained(), cause, now)

    # ---- recovery ----

    def start_recovery(self, cause: Cause, now: datetime) -> None:
        self._require("recover-after-contain", (S.INCIDENT_STATE_CONTAINED,),
                      "recovery starts only once the incident is contained")
        self.record("recovery_started", pb.RecoveryStarted(), cause, now)

    def complete_recovery(self, cause: Cause, now: datetime) -> None:
        self._require("recovered-after-recovering", (S.INCIDENT_STATE_RECOVERING,),
                      "recovery completes only after it has started")
        pending = [t.id for t in self.view.recovery_tasks if not t.done]
        if pending:
            raise RuleViolation("recovered-when-tasks-done",
                                "recovery tasks not done: " + ", ".join(pending))
        self.record("recovered", pb.IncidentRecovered(), cause, now)

    def close(self, cause: Cause, now: datetime) -> None:
        self._require("close-after-recovery", (S.INCIDENT_STATE_RECOVERED,),
                      "an incident closes only once it has recovered")
        if self.state.deployed_units():
            raise RuleViolation("close-without-deployed-units", "release every unit first ("
                                + ", ".join(u.unit_id for u in self.state.deployed_units())
                                + " still deployed)")
        if self.state.open_orders():
            raise RuleViolation("close-with-orders-closed", "every order must be verified or "
                                "cancelled first (open: " + ", ".join(
                                    o.id for o in self.state.open_orders()) + ")")
        self.record("closed", pb.IncidentClosed(), cause, now)

    def release_units(self, unit_ids: Sequence[str], cause: Cause, now: datetime) -> None:
        """Send units home (all deployed units when none are named)."""
        self._require("release-while-active", ACTIVE, "units are released from an active "
                                                      "incident")
        deployed = {u.unit_id for u in self.state.deployed_units()}
        for unit_id in unit_ids:
            if unit_id not in deployed:
                raise InvalidArgument("unit_ids", f"unit {unit_id} is not deployed on this "
                                                  "incident")
        for unit_id in dict.fromkeys(unit_ids) or [u.unit_id for u in
                                                   self.state.deployed_units()]:
            self.record("unit_released", pb.UnitReleased(unit_id=unit_id), cause, now)

    # ---- command and orders ----

    def hand_over(self, to_commander: str, cause: Cause, now: datetime) -> None:
        self._require("command-while-active", ACTIVE,
                      "command is handed over only while the incident is active")
        self._require_commander(cause, "hand over command")
        if not to_commander.strip() or to_commander == self.view.commander:
            raise InvalidArgument("to_commander", "name the officer who takes over")
        self.record("commander_assigned", pb.CommanderAssigned(
            commander=to_commander, previous_commander=self.view.commander), cause, now)

    def issue_order(self, department: str, unit_id: str, tier: int, instruction: str,
                    life_safety: bool, ack_minutes: int, complete_minutes: int, cause: Cause,
                    now: datetime) -> str:
        self._require_commander(cause, "issue orders")
        if life_safety and self.view.state not in (S.INCIDENT_STATE_DECLARED,
                                                   S.INCIDENT_STATE_RESPONDING):
            raise RuleViolation("life-safety-before-containment",
                                "a contained incident takes no new life-safety order; "
                                "lives at risk mean it is not contained")
        if unit_id:
            unit = self.state.unit(unit_id)
            if unit is None or unit.released:
                raise RuleViolation("order-to-deployed-unit",
                                    f"unit {unit_id} is not deployed on this incident")
            busy = [o for o in self.view.orders
                    if o.unit_id == unit_id and o.status in UNFINISHED_ORDER]
            if busy:
                raise RuleViolation("no-contradictory-orders",
                                    f"unit {unit_id} already carries order {busy[0].id} "
                                    f"({busy[0].instruction!r}); complete or cancel it first")
        return self._issue(department, unit_id, tier, instruction, life_safety, ack_minutes,
                           complete_minutes, cause, now)

    def _issue(self, department: str, unit_id: str, tier: int, instruction: str,
               life_safety: bool, ack_minutes: int, complete_minutes: int, cause: Cause,
               now: datetime, plan_order_id: str = "") -> str:
        self._require("orders-while-active", ACTIVE, "orders are issued for an active incident")
        order_id = f"O-{len(self.view.orders) + 1}"
        issued = cause.occurred_at
        self.record("order_issued", pb.OrderIssued(
            order_id=order_id, department=department, unit_id=unit_id, tier=tier,  # type: ignore[arg-type]
            instruction=instruction, life_safety=life_safety,
            acknowledge_by=to_timestamp(issued + timedelta(minutes=ack_minutes)),
            complete_by=to_timestamp(issued + timedelta(minutes=complete_minutes)),
            plan_order_id=plan_order_id), cause, now)
        return order_id

    def acknowledge_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._order_step(order_id, (pb.ORDER_STATUS_ISSUED,), "acknowledge-issued-order",
                         "only an order just issued is acknowledged")
        self.record("order_acknowledged", pb.OrderAcknowledged(order_id=order_id), cause, now)

    def report_order_progress(self, order_id: str, note: str, percent: int, cause: Cause,
                              now: datetime) -> None:
        self._order_step(order_id, (pb.ORDER_STATUS_ACKNOWLEDGED, pb.ORDER_STATUS_IN_PROGRESS),
                         "progress-after-acknowledgement",
                         "progress is reported on an acknowledged order")
        if percent > 100:
            raise InvalidArgument("percent", "at most 100")
        self.record("order_progress_reported", pb.OrderProgressReported(
            order_id=order_id, note=note, percent=percent), cause, now)

    def complete_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._order_step(order_id, (pb.ORDER_STATUS_ACKNOWLEDGED, pb.ORDER_STATUS_IN_PROGRESS),
                         "complete-after-acknowledgement",
                         "an order is completed after it was acknowledged")
        self.record("order_completed", pb.OrderCompleted(order_id=order_id), cause, now)

    def verify_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._require_commander(cause, "verify orders")
        self._order_step(order_id, (pb.ORDER_STATUS_COMPLETED,), "verify-completed-order",
                         "only a completed order is verified")
        self.record("order_verified", pb.OrderVerified(order_id=order_id), cause, now)

    def cancel_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._require_commander(cause, "cancel orders")
        if not cause.reason.strip():
            raise InvalidArgument("action.reason", "a cancellation needs a reason")
        self._order_step(order_id, (*UNFINISHED_ORDER, pb.ORDER_STATUS_COMPLETED),
                         "cancel-open-order", "only an open order is cancelled")
        self.record("order_cancelled", pb.OrderCancelled(order_id=order_id), cause, now)

    def record_overdue(self, field_now: datetime, now: datetime) -> int:
        """Record each deadline that passed unmet by field time field_now, once; each is
        escalated to the commander. Returns how many were recorded."""
        due = due_deadlines(self.view, field_now)
        for order_id, deadline, due_at in due:
            which = "acknowledgement" if deadline == pb.DEADLINE_ACKNOWLEDGEMENT else "completion"
            # At the time it fell due; clamped only in a history recorded before every step
            # recorded the deadlines passed before it.
            cause = self._not_before_last_step(Cause(
                actor="dispatch", occurred_at=from_timestamp(due_at),
                reason=f"{which} deadline passed", causation_id=f"{self.id}/order/{order_id}"))
            self.record("order_overdue", pb.OrderOverdue(
                order_id=order_id, deadline=deadline, due_at=due_at,  # type: ignore[arg-type]
                escalated_to=self.view.commander), cause, now)
        return len(due)

    def _order_step(self, order_id: str, allowed: Sequence[int], rule: str, why: str) -> None:
        self._require("orders-while-active", ACTIVE, "orders change only on an active incident")
        order = self.state.order(order_id)
        if order is None:
            raise NotFound("order", order_id)
        if order.status not in allowed:
            status = pb.OrderStatus.Name(order.status).removeprefix("ORDER_STATUS_")
            raise RuleViolation(rule, f"{why} (order {order_id} is {status})")

    def _require_commander(self, cause: Cause, what: str) -> None:
        if cause.actor != self.view.commander:
            commander = self.view.commander or "none yet"
            raise RuleViolation("single-command", f"only the commander ({commander}) may "
                                                  f"{what}; {cause.actor} is not")

    # ---- the picture and recovery ----

    def report_situation(self, situation: pb.SituationReported, cause: Cause,
                         now: datetime) -> None:
        self._require("situation-while-open", OPEN, "the situation is reported while the "
                                                    "incident is open")
        self.record("situation_reported", situation, cause, now)

    def add_recovery_task(self, kind: int, owner: str, description: str, cause: Cause,
                          now: datetime) -> str:
        self._require("tasks-during-recovery",
                      (S.INCIDENT_STATE_CONTAINED, S.INCIDENT_STATE_RECOVERING),
                      "recovery tasks are planned once the incident is contained")
        task_id = f"T-{len(self.view.recovery_tasks) + 1}"
        self.record("recovery_task_added", pb.RecoveryTaskAdded(
            task_id=task_id, kind=kind, owner=owner, description=description), cause, now)  # type: ignore[arg-type]
        return task_id

    def complete_recovery_task(self, task_id: str, cause: Cause, now: datetime) -> None:
        self._require("tasks-during-recovery", (S.INCIDENT_STATE_RECOVERING,),
                      "recovery tasks are done while recovering")
        task = self.state.task(task_id)
        if task is None:
            raise NotFound("recovery task", task_id)
        if task.done:
            raise RuleViolation("task-done-once", f"task {task_id} is already done")
        self.record("recovery_task_completed", pb.RecoveryTaskCompleted(task_id=task_id),
                    cause, now)

    def mark_reviewed(self, summary: str, cause: Cause, now: datetime) -> None:
        self._require("review-after-end", (S.INCIDENT_STATE_CLOSED, S.INCIDENT_STATE_DISMISSED),
                      "only a closed or dismissed incident is reviewed")
        if self.view.reviewed:
            raise RuleViolation("reviewed-once", "the incident is already marked reviewed")
        self.record("reviewed", pb.IncidentReviewed(summary=summary), cause, now)

    def dismiss(self, cause: Cause, now: datetime) -> None:
        self._require("dismiss-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be dismissed as a false alarm")
        self.record("dismissed", pb.IncidentDismissed(), cause, now)

    def _require(self, rule: str, allowed: Sequence[int], why: str) -> None:
        if self.view.state not in allowed:
            raise RuleViolation(rule, f"{why} (incident {self.id} is "
                                      f"{state_name(self.view.state)})")
