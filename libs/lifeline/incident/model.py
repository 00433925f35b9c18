"""The Incident: one model that dispatch writes and review replays.

`IncidentState` is a pure fold over `lifeline.incident.v1.IncidentEvent` messages; review
uses it alone to replay a history. `Incident` is the event-sourced aggregate dispatch keeps:
its commands check the lifecycle rules and record events, which the same fold applies.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, NoReturn, Self, TypeVar, cast
from uuid import UUID

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

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


T = TypeVar("T")


class _Held(Generic[T]):
    """A field of a message the state holds, read through it: the meta of the event that
    set one of its times, or the event that started a part. Reaching a sub-message (a
    Timestamp) costs about as much as the rest of a step, so the fold keeps the message it
    already has in hand and the field is reached only when read (None while the state
    holds no such message)."""

    __slots__ = ("field", "holder")

    def __init__(self, holder: str, field: str = "occurred_at") -> None:
        self.holder, self.field = holder, field

    def __get__(self, state: Any, owner: type | None = None) -> T:
        held = getattr(state, self.holder)
        return None if held is None else getattr(held, self.field)  # type: ignore[return-value]


class _Part:
    """A part of the incident's state (a unit's stint, an order, a recovery task), its
    fields named as in its view message: the event that started it and that event's meta,
    held, and what its later steps changed."""

    __slots__: tuple[str, ...] = ("start", "start_meta")
    #: Every slot of the class and its bases (what a copy copies).
    _fields: tuple[str, ...] = ()

    def __init__(self, start: Any, meta: Meta) -> None:
        self.start, self.start_meta = start, meta

    def __init_subclass__(cls) -> None:
        cls._fields = tuple(name for klass in cls.__mro__
                            for name in getattr(klass, "__slots__", ()))

    def copy(self) -> Self:
        clone = object.__new__(type(self))
        for name in self._fields:
            setattr(clone, name, getattr(self, name))
        return clone


class Stint(_Part):
    """A unit's stint with the incident: from its assignment until it is released (a
    released unit may come back, for a stint of its own)."""

    __slots__ = ("on_scene_meta", "released", "status", "unit_id")

    unit_kind = _Held[str]("start", "unit_kind")
    distance_km = _Held[float]("start", "distance_km")
    assigned_at = _Held[Timestamp]("start_meta")
    on_scene_at = _Held[Timestamp | None]("on_scene_meta")

    def __init__(self, assigned: Any, meta: Meta) -> None:
        super().__init__(assigned, meta)
        self.unit_id: str = assigned.unit_id
        self.status: common_pb2.UnitStatus.ValueType = common_pb2.UNIT_STATUS_ASSIGNED
        #: The meta of its first report on scene.
        self.on_scene_meta: Meta | None = None
        self.released = False

    def message(self) -> pb.IncidentUnit:
        return pb.IncidentUnit(unit_id=self.unit_id, unit_kind=self.unit_kind,
                               status=self.status, assigned_at=self.assigned_at,
                               on_scene_at=self.on_scene_at, released=self.released,
                               distance_km=self.distance_km)


class OrderState(_Part):
    """An order as its steps so far leave it (what it says, read through the event that
    issued it)."""

    __slots__ = ("acknowledged_meta", "completed_meta", "id", "last_note", "overdue",
                 "percent", "status", "verified_meta")

    department = _Held[str]("start", "department")
    unit_id = _Held[str]("start", "unit_id")
    tier = _Held[pb.OrderTier.ValueType]("start", "tier")
    instruction = _Held[str]("start", "instruction")
    life_safety = _Held[bool]("start", "life_safety")
    plan_order_id = _Held[str]("start", "plan_order_id")
    acknowledge_by = _Held[Timestamp]("start", "acknowledge_by")
    complete_by = _Held[Timestamp]("start", "complete_by")
    issued_by = _Held[str]("start_meta", "actor")
    issued_at = _Held[Timestamp]("start_meta")
    acknowledged_at = _Held[Timestamp | None]("acknowledged_meta")
    completed_at = _Held[Timestamp | None]("completed_meta")
    verified_at = _Held[Timestamp | None]("verified_meta")

    def __init__(self, issued: Any, meta: Meta) -> None:
        super().__init__(issued, meta)
        self.id: str = issued.order_id
        self.status: pb.OrderStatus.ValueType = pb.ORDER_STATUS_ISSUED
        #: The metas of the steps that acknowledged, completed and verified it.
        self.acknowledged_meta: Meta | None = None
        self.completed_meta: Meta | None = None
        self.verified_meta: Meta | None = None
        self.percent, self.last_note = 0, ""
        self.overdue: list[int] = []

    def copy(self) -> Self:
        clone = super().copy()
        clone.overdue = list(self.overdue)
        return clone

    def message(self) -> pb.Order:
        return pb.Order(
            id=self.id, department=self.department, unit_id=self.unit_id, tier=self.tier,
            instruction=self.instruction, life_safety=self.life_safety, status=self.status,
            issued_at=self.issued_at, acknowledge_by=self.acknowledge_by,
            complete_by=self.complete_by, acknowledged_at=self.acknowledged_at,
            completed_at=self.completed_at, verified_at=self.verified_at,
            percent=self.percent, last_note=self.last_note, overdue=self.overdue,  # type: ignore[arg-type]
            issued_by=self.issued_by, plan_order_id=self.plan_order_id)


class TaskState(_Part):
    """A recovery task, done or not."""

    __slots__ = ("done", "done_meta", "id")

    kind = _Held[pb.RecoveryTaskKind.ValueType]("start", "kind")
    owner = _Held[str]("start", "owner")
    description = _Held[str]("start", "description")
    done_at = _Held[Timestamp | None]("done_meta")

    def __init__(self, added: Any, meta: Meta) -> None:
        super().__init__(added, meta)
        self.id: str = added.task_id
        self.done, self.done_meta = False, cast(Meta | None, None)

    def message(self) -> pb.RecoveryTask:
        return pb.RecoveryTask(id=self.id, kind=self.kind, owner=self.owner,
                               description=self.description, done=self.done,
                               done_at=self.done_at)


#: Quantities by name, in the order first named: unit kinds (count) or materials
#: (quantity and the unit it is counted in, as first given).
Counts = dict[str, int]
Amounts = dict[str, tuple[int, str]]
#: The incident's times the fold keeps as the meta of the event that set them.
_STAMPS = ("opened_at", "declared_at", "contained_at", "recovery_started_at", "recovered_at",
           "closed_at", "dismissed_at", "reviewed_at")


class IncidentState:
    """The incident as its history so far says it is.

    `extend` is the one fold: dispatch runs it as it records, review as it replays
    (hundreds of thousands of events a second across incidents), so the state is plain
    Python values named as in the `pb.Incident` message (writing into a message cost
    several times a step's own work), with one step per event type, found in a dict, and
    indexes of units, orders and tasks by id. Messages the events hold (their metas, a
    location, a plan) are shared, never changed, and read through (`_Held`), not copied;
    a time is None where the message would leave the field unset. `view` is the message,
    built when first asked for after a change."""

    __slots__ = ("_offset", "_orders", "_tasks", "_units", "_view", "category",
                 "closed_meta", "commander", "contained_meta", "declared_meta",
                 "description", "dismissed_meta", "grade", "grid_cell", "hazard",
                 "hazard_type", "id", "location", "material_shortfalls", "materials_consumed",
                 "materials_requested", "materials_reserved", "materials_returned",
                 "opened_meta", "orders", "plan", "recovered_meta", "recovery_started_meta",
                 "recovery_tasks", "reporter", "requested", "reviewed", "reviewed_meta",
                 "shortfalls", "situation", "state", "times_reopened", "units",
                 "updated_at", "version", "warning_id", "warning_level")

    opened_at = _Held[Timestamp | None]("opened_meta")
    declared_at = _Held[Timestamp | None]("declared_meta")
    contained_at = _Held[Timestamp | None]("contained_meta")
    recovery_started_at = _Held[Timestamp | None]("recovery_started_meta")
    recovered_at = _Held[Timestamp | None]("recovered_meta")
    closed_at = _Held[Timestamp | None]("closed_meta")
    dismissed_at = _Held[Timestamp | None]("dismissed_meta")
    reviewed_at = _Held[Timestamp | None]("reviewed_meta")

    def __init__(self) -> None:
        self.id = self.hazard = self.hazard_type = self.grid_cell = self.warning_id = ""
        self.description = self.reporter = self.commander = ""
        self.state: pb.IncidentState.ValueType = pb.INCIDENT_STATE_UNSPECIFIED
        self.category: pb.Category.ValueType = pb.CATEGORY_UNSPECIFIED
        self.grade: pb.Grade.ValueType = pb.GRADE_UNSPECIFIED
        self.warning_level: common_pb2.WarningLevel.ValueType = \
            common_pb2.WARNING_LEVEL_UNSPECIFIED
        self.version = self.times_reopened = 0
        self.reviewed = False
        self.opened_meta: Meta | None = None
        self.declared_meta: Meta | None = None
        self.contained_meta: Meta | None = None
        self.recovery_started_meta: Meta | None = None
        self.recovered_meta: Meta | None = None
        self.closed_meta: Meta | None = None
        self.dismissed_meta: Meta | None = None
        self.reviewed_meta: Meta | None = None
        self.updated_at: Timestamp | None = None
        self.location: common_pb2.GeoPoint | None = None
        #: The plan in force: the event that put it in force.
        self.plan: pb.PlanActivated | None = None
        #: The latest situation report and its meta (when it was given).
        self.situation: tuple[pb.SituationReported, Meta] | None = None
        self.units: list[Stint] = []
        self.orders: list[OrderState] = []
        self.recovery_tasks: list[TaskState] = []
        self.requested: Counts = {}
        self.shortfalls: Counts = {}
        self.materials_requested: Amounts = {}
        self.material_shortfalls: Amounts = {}
        self.materials_consumed: Amounts = {}
        self.materials_returned: Amounts = {}
        self.materials_reserved: list[pb.MaterialReserved] = []
        #: The field clock's offset (occurred - recorded, in microseconds) at the last event
        #: that moved it: the view's field_time_offset.
        self._offset: int | None = None
        #: Each unit's latest stint, and the first order and recovery task with each id.
        self._units: dict[str, Stint] = {}
        self._orders: dict[str, OrderState] = {}
        self._tasks: dict[str, TaskState] = {}
        self._view: pb.Incident | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> IncidentState:
        """A copy whose units, orders and tasks are its own (the events' messages it holds
        are never changed, so they are shared). It builds its own view: the repository
        copies only its cached aggregates, which never build one, so sharing a built view
        saved nothing and would hand two owners one mutable message."""
        clone = object.__new__(IncidentState)
        for name in self.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.units = [u.copy() for u in self.units]
        clone.orders = [o.copy() for o in self.orders]
        clone.recovery_tasks = [t.copy() for t in self.recovery_tasks]
        clone._units = {u.unit_id: u for u in clone.units}
        clone._orders, clone._tasks = {}, {}
        for order in clone.orders:
            clone._orders.setdefault(order.id, order)
        for task in clone.recovery_tasks:
            clone._tasks.setdefault(task.id, task)
        for name in ("requested", "shortfalls", "materials_requested", "material_shortfalls",
                     "materials_consumed", "materials_returned", "materials_reserved"):
            setattr(clone, name, copy.copy(getattr(self, name)))
        clone._view = None
        memo[id(self)] = clone
        return clone

    @classmethod
    def replay(cls, events: Iterable[pb.IncidentEvent]) -> IncidentState:
        state = cls()
        state.extend(list(events))
        return state

    @property
    def view(self) -> pb.Incident:
        """The incident as a `pb.Incident` (what the read model keeps and the API hands
        out), built on first use after a change. Its readers never change it."""
        if self._view is None:
            self._view = self._message()
        return self._view

    def unit(self, unit_id: str) -> Stint | None:
        """The unit's latest stint with the incident (a released unit may come back)."""
        return self._units.get(unit_id)

    def deployed_units(self) -> list[Stint]:
        return [u for u in self.units if not u.released]

    def last_step(self) -> datetime:
        """When (field time) the incident last changed."""
        return from_timestamp(self.updated_at or Timestamp())

    def apply(self, wrapper: Message) -> None:
        """Apply the incident's next event."""
        self.extend((wrapper,))

    def extend(self, wrappers: Sequence[Message]) -> None:
        """Apply the incident's next events in order: what `apply` does for each, with the
        incident's clock (version, updated_at, field time offset) written once, after the
        last (or the one that failed), not once per event. The loop does only what every
        event needs: a replay across incidents runs it hundreds of thousands of times a
        second, and each access to a message costs about as much as a step's own work."""
        self._view = None
        start = version = self.version
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
                step(self, event, meta)
        finally:
            if version != start:
                self._clock(wrappers, version - start)

    def _clock(self, wrappers: Sequence[Message], applied: int) -> None:
        """After the first `applied` of `wrappers`: the version, when the incident last
        changed (the last event), and the field clock's offset, from the last event that
        moves it (not the deadline watch's own steps, or each would slow it by the watch's
        lag) and says when it was recorded (all but hand-written histories)."""
        self.version += applied
        for n in range(applied - 1, -1, -1):
            wrapper = wrappers[n]
            field = str(_which(wrapper, "event"))
            meta: common_pb2.EventMeta = getattr(wrapper, field).meta
            if n == applied - 1:
                self.updated_at = meta.occurred_at
            if field != "order_overdue" and meta.HasField("recorded_at"):
                # occurred - recorded to the microsecond, in integers (through datetimes
                # this was a third of the time a replay spent per event)
                at, recorded = meta.occurred_at, meta.recorded_at
                self._offset = ((at.seconds - recorded.seconds) * 1_000_000
                                + at.nanos // 1000 - recorded.nanos // 1000)
                return

    def _message(self) -> pb.Incident:
        offset = None
        if self._offset is not None:
            # Normalised as Duration.FromMicroseconds does (seconds and nanos of one sign).
            seconds, micros = divmod(self._offset, 1_000_000)
            if seconds < 0 and micros:
                seconds, micros = seconds + 1, micros - 1_000_000
            offset = Duration(seconds=seconds, nanos=micros * 1000)
        plan = self.plan
        active = None if plan is None else pb.ActivePlan(
            plan_id=plan.plan_id, plan_version=plan.plan_version,
            content_hash=plan.content_hash, grade=plan.grade,
            response_time_target_minutes=plan.response_time_target_minutes,
            departments_notified=plan.departments_notified, materials=plan.materials)
        situation = None
        if self.situation is not None:
            report, reported = self.situation
            situation = pb.Situation(
                dead=report.dead, injured=report.injured, missing=report.missing,
                affected=report.affected, evacuated=report.evacuated,
                area_km2=report.area_km2, text=report.text,
                reported_at=reported.occurred_at)
        return pb.Incident(
            id=self.id, state=self.state, version=self.version, hazard=self.hazard,
            category=self.category, hazard_type=self.hazard_type, grade=self.grade,
            location=self.location, grid_cell=self.grid_cell, warning_id=self.warning_id,
            warning_level=self.warning_level, description=self.description,
            reporter=self.reporter, units=[u.message() for u in self.units],
            shortfalls=_requirements(self.shortfalls), requested=_requirements(self.requested),
            commander=self.commander, plan=active,
            orders=[o.message() for o in self.orders], situation=situation,
            recovery_tasks=[t.message() for t in self.recovery_tasks],
            reviewed=self.reviewed, field_time_offset=offset,
            times_reopened=self.times_reopened,
            materials_requested=_materials(self.materials_requested),
            materials_reserved=[pb.MaterialReservation(
                request_id=r.request_id, depot_id=r.depot_id, material=r.material,
                distance_km=r.distance_km) for r in self.materials_reserved],
            material_shortfalls=_materials(self.material_shortfalls),
            materials_consumed=_materials(self.materials_consumed),
            materials_returned=_materials(self.materials_returned),
            updated_at=self.updated_at, **{stamp: getattr(self, stamp) for stamp in _STAMPS})

    def order(self, order_id: str) -> OrderState | None:
        return self._orders.get(order_id)

    def task(self, task_id: str) -> TaskState | None:
        return self._tasks.get(task_id)

    def open_orders(self) -> list[OrderState]:
        """Orders not yet closed: neither verified by the commander nor cancelled."""
        return [o for o in self.orders if o.status not in CLOSED_ORDER]

    def committed(self, unit_kind: str) -> int:
        """Units of a kind requested and not (yet) known to be missing or released."""
        released = sum(1 for u in self.units if u.unit_kind == unit_kind and u.released)
        return (self.requested.get(unit_kind, 0) - self.shortfalls.get(unit_kind, 0)
                - released)

    def committed_material(self, name: str) -> int:
        """A material requested and not (yet) known to be missing. What was reserved stays
        committed whether it is consumed or returned: a grade asks for it once."""
        return (self.materials_requested.get(name, (0, ""))[0]
                - self.material_shortfalls.get(name, (0, ""))[0])


def _requirements(counts: Counts) -> list[pb.UnitRequirement]:
    return [pb.UnitRequirement(unit_kind=kind, count=count) for kind, count in counts.items()]


def _materials(amounts: Amounts) -> list[pb.Material]:
    return [pb.Material(name=name, quantity=quantity, unit=unit)
            for name, (quantity, unit) in amounts.items()]


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


def due_deadlines(view: pb.Incident | IncidentState, field_now: datetime
                  ) -> list[tuple[str, int, Any]]:
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


# ---- the fold's steps, one per event type: (state, the event, its meta) ----
# Enum values as the module's constants: through the enum's wrapper (S.X) each costs a
# Python-level __getattr__, more than the rest of a step.

Meta = common_pb2.EventMeta
Step = Callable[[IncidentState, Any, Meta], None]
_UINT32 = 2**32 - 1


def _add(counts: Counts, kind: str, count: int) -> None:
    total = counts[kind] = counts.get(kind, 0) + count
    if total > _UINT32:
        raise ValueError(f"{total} {kind} is more than a count holds")


def _add_material(amounts: Amounts, material: pb.Material) -> None:
    name = material.name
    quantity, unit = amounts.get(name, (0, material.unit))
    quantity += material.quantity
    if quantity > _UINT32:
        raise ValueError(f"{quantity} {material.unit} of {name} is more than a quantity "
                         "holds")
    amounts[name] = quantity, unit




# An event about a unit or order the incident never had: `index.get(id) or _never_...(event)`
# in the steps (a method call for the lookup cost the busiest steps about a sixth of their
# time).

def _never_assigned(event: Any) -> NoReturn:
    raise ValueError(f"unit {event.unit_id!r} was never assigned to the incident")


def _never_issued(event: Any) -> NoReturn:
    raise ValueError(f"order {event.order_id!r} was never issued")


def _opened(s: IncidentState, event: Any, meta: Meta) -> None:
    s.id, s.state = meta.aggregate_id, pb.INCIDENT_STATE_WARNING
    s.hazard, s.warning_id, s.grid_cell = event.hazard, event.warning_id, event.grid_cell
    s.warning_level, s.location, s.opened_meta = event.level, event.location, meta


def _reported(s: IncidentState, event: Any, meta: Meta) -> None:
    s.id, s.state = meta.aggregate_id, pb.INCIDENT_STATE_WARNING
    s.hazard, s.grid_cell = event.hazard, event.grid_cell
    s.description, s.reporter = event.description, event.reporter
    s.location, s.opened_meta = event.location, meta


def _warning_level_changed(s: IncidentState, event: Any, meta: Meta) -> None:
    s.warning_level = event.level


def _warning_cleared(s: IncidentState, event: Any, meta: Meta) -> None:
    s.warning_level = common_pb2.WARNING_LEVEL_NONE


def _declared(s: IncidentState, event: Any, meta: Meta) -> None:
    s.state = pb.INCIDENT_STATE_DECLARED
    s.category, s.hazard_type, s.grade = event.category, event.hazard_type, event.grade
    s.declared_meta = meta


def _resources_requested(s: IncidentState, event: Any, meta: Meta) -> None:
    for need in event.requirements:
        _add(s.requested, need.unit_kind, need.count)
    for m in event.materials:
        _add_material(s.materials_requested, m)


def _material_reserved(s: IncidentState, event: Any, meta: Meta) -> None:
    s.materials_reserved.append(event)


def _material_shortfall(s: IncidentState, event: Any, meta: Meta) -> None:
    _add_material(s.material_shortfalls, event.material)


def _material_consumed(s: IncidentState, event: Any, meta: Meta) -> None:
    _add_material(s.materials_consumed, event.material)


def _material_returned(s: IncidentState, event: Any, meta: Meta) -> None:
    _add_material(s.materials_returned, event.material)


def _unit_assigned(s: IncidentState, event: Any, meta: Meta) -> None:
    if s.state == pb.INCIDENT_STATE_DECLARED:
        s.state = pb.INCIDENT_STATE_RESPONDING
    unit = Stint(event, meta)
    s._units[unit.unit_id] = unit
    s.units.append(unit)


def _resource_shortfall(s: IncidentState, event: Any, meta: Meta) -> None:
    _add(s.shortfalls, event.unit_kind, event.missing)


def _unit_status_reported(s: IncidentState, event: Any, meta: Meta) -> None:
    unit = s._units.get(event.unit_id) or _never_assigned(event)
    status = unit.status = event.status
    if status == common_pb2.UNIT_STATUS_ON_SCENE and unit.on_scene_meta is None:
        unit.on_scene_meta = meta


def _unit_released(s: IncidentState, event: Any, meta: Meta) -> None:
    unit = s._units.get(event.unit_id) or _never_assigned(event)
    unit.released, unit.status = True, common_pb2.UNIT_STATUS_AVAILABLE


def _phase(state: pb.IncidentState.ValueType, stamp: str) -> Step:
    """The step of an event that moves the incident to a phase and keeps its meta (when it
    did) in `stamp`."""
    def step(s: IncidentState, event: Any, meta: Meta) -> None:
        s.state = state
        setattr(s, stamp, meta)

    return step


def _grade_changed(s: IncidentState, event: Any, meta: Meta) -> None:
    s.grade = event.to_grade


def _response_reopened(s: IncidentState, event: Any, meta: Meta) -> None:
    s.state = pb.INCIDENT_STATE_RESPONDING
    s.times_reopened += 1
    # The phases after containment start over; they are recorded again as they hold.
    s.contained_meta = s.recovery_started_meta = s.recovered_meta = None


def _plan_activated(s: IncidentState, event: Any, meta: Meta) -> None:
    s.plan = event


def _commander_assigned(s: IncidentState, event: Any, meta: Meta) -> None:
    s.commander = event.commander


def _situation_reported(s: IncidentState, event: Any, meta: Meta) -> None:
    s.situation = event, meta


def _recovery_task_added(s: IncidentState, event: Any, meta: Meta) -> None:
    task = TaskState(event, meta)
    s.recovery_tasks.append(task)
    s._tasks.setdefault(task.id, task)


def _recovery_task_completed(s: IncidentState, event: Any, meta: Meta) -> None:
    task = s._tasks.get(event.task_id)
    if task is None:
        raise ValueError(f"recovery task {event.task_id!r} was never added")
    task.done, task.done_meta = True, meta


def _reviewed(s: IncidentState, event: Any, meta: Meta) -> None:
    s.reviewed, s.reviewed_meta = True, meta


def _order_issued(s: IncidentState, event: Any, meta: Meta) -> None:
    order = OrderState(event, meta)
    s.orders.append(order)
    s._orders.setdefault(order.id, order)


def _order_acknowledged(s: IncidentState, event: Any, meta: Meta) -> None:
    order = s._orders.get(event.order_id) or _never_issued(event)
    order.status, order.acknowledged_meta = pb.ORDER_STATUS_ACKNOWLEDGED, meta


def _order_progress_reported(s: IncidentState, event: Any, meta: Meta) -> None:
    order = s._orders.get(event.order_id) or _never_issued(event)
    order.status = pb.ORDER_STATUS_IN_PROGRESS
    order.percent, order.last_note = event.percent, event.note


def _order_completed(s: IncidentState, event: Any, meta: Meta) -> None:
    order = s._orders.get(event.order_id) or _never_issued(event)
    order.status, order.percent = pb.ORDER_STATUS_COMPLETED, 100
    order.completed_meta = meta


def _order_verified(s: IncidentState, event: Any, meta: Meta) -> None:
    order = s._orders.get(event.order_id) or _never_issued(event)
    order.status, order.verified_meta = pb.ORDER_STATUS_VERIFIED, meta


def _order_cancelled(s: IncidentState, event: Any, meta: Meta) -> None:
    order = s._orders.get(event.order_id) or _never_issued(event)
    order.status = pb.ORDER_STATUS_CANCELLED


def _order_overdue(s: IncidentState, event: Any, meta: Meta) -> None:
    order = s._orders.get(event.order_id) or _never_issued(event)
    order.overdue.append(event.deadline)


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
    "contained": _phase(pb.INCIDENT_STATE_CONTAINED, "contained_meta"),
    "recovery_started": _phase(pb.INCIDENT_STATE_RECOVERING, "recovery_started_meta"),
    "recovered": _phase(pb.INCIDENT_STATE_RECOVERED, "recovered_meta"),
    "closed": _phase(pb.INCIDENT_STATE_CLOSED, "closed_meta"),
    "dismissed": _phase(pb.INCIDENT_STATE_DISMISSED, "dismissed_meta"),
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
        last = self.state.last_step()
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
            cause = replace(cause, correlation_id=self.state.warning_id or str(self.id))
        super().record(field, event, cause, now)

    def _not_before_last_step(self, cause: Cause) -> Cause:
        """Another service's event is never refused (that would wedge the inbox): it keeps
        its field time, clamped so it never goes before the incident's last step."""
        last = self.state.last_step()
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
        if self.state.state in OPEN and level != self.state.warning_level:
            self.record("warning_level_changed", pb.WarningLevelChanged(
                warning_id=self.state.warning_id, level=level),  # type: ignore[arg-type]
                self._not_before_last_step(cause), now)

    def clear_warning(self, cause: Cause, now: datetime) -> None:
        if self.state.state in OPEN and self.state.warning_level != common_pb2.WARNING_LEVEL_NONE:
            self.record("warning_cleared", pb.WarningCleared(warning_id=self.state.warning_id),
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
        if grade == self.state.grade:
            raise RuleViolation("regrade-changes-grade", f"the incident is already grade "
                                                         f"{grade_name(grade)}")
        previous, state = self.state.grade, self.state.state
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
                request_id=request_id, requirements=extra, location=self.state.location,
                materials=materials), cause, now)
        issued = {o.plan_order_id for o in self.state.orders if o.plan_order_id}
        for order in response.orders:
            if order.id not in issued:
                self._issue(order.department, "", order.tier, order.instruction,
                            order.life_safety, order.ack_minutes, order.complete_minutes,
                            cause, now, plan_order_id=order.id)

    def assign_unit(self, request_id: str, unit_id: str, unit_kind: str, distance_km: float,
                    cause: Cause, now: datetime) -> bool:
        """Record a unit resources gave us; False when it changes nothing (a repeat)."""
        unit = self.state.unit(unit_id)
        if self.state.state not in ACTIVE or (unit is not None and not unit.released):
            return False
        self.record("unit_assigned", pb.UnitAssigned(request_id=request_id, unit_id=unit_id,
                                                     unit_kind=unit_kind,
                                                     distance_km=distance_km),
                    self._not_before_last_step(cause), now)
        return True

    def record_shortfall(self, request_id: str, unit_kind: str, missing: int, cause: Cause,
                         now: datetime) -> None:
        if self.state.state in ACTIVE:
            self.record("resource_shortfall", pb.ResourceShortfall(
                request_id=request_id, unit_kind=unit_kind, missing=missing),
                self._not_before_last_step(cause), now)

    def reserve_material(self, request_id: str, depot_id: str, material: pb.Material,
                         distance_km: float, cause: Cause, now: datetime) -> None:
        """Record materials a depot reserved for the incident (resources' answer)."""
        if self.state.state in ACTIVE:
            self.record("material_reserved", pb.MaterialReserved(
                request_id=request_id, depot_id=depot_id, material=material,
                distance_km=distance_km), self._not_before_last_step(cause), now)

    def record_material_shortfall(self, request_id: str, material: pb.Material, cause: Cause,
                                  now: datetime) -> None:
        """No depot could cover a material: material.quantity is what is missing."""
        if self.state.state in ACTIVE:
            self.record("material_shortfall", pb.MaterialShortfall(
                request_id=request_id, material=material), self._not_before_last_step(cause),
                now)

    def record_material_use(self, depot_id: str, material: pb.Material, consumed: bool,
                            cause: Cause, now: datetime) -> bool:
        """A depot's department reported materials the incident held used up (consumed) or
        brought back; recorded while the incident is active (after closure, resources puts
        back what it still held, and the incident takes no more steps)."""
        if self.state.state not in ACTIVE or not material.quantity:
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
        if self.state.state not in OPEN or unit is None or unit.released:
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
        pending = [t.id for t in self.state.recovery_tasks if not t.done]
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
        if not to_commander.strip() or to_commander == self.state.commander:
            raise InvalidArgument("to_commander", "name the officer who takes over")
        self.record("commander_assigned", pb.CommanderAssigned(
            commander=to_commander, previous_commander=self.state.commander), cause, now)

    def issue_order(self, department: str, unit_id: str, tier: int, instruction: str,
                    life_safety: bool, ack_minutes: int, complete_minutes: int, cause: Cause,
                    now: datetime) -> str:
        self._require_commander(cause, "issue orders")
        if life_safety and self.state.state not in (S.INCIDENT_STATE_DECLARED,
                                                   S.INCIDENT_STATE_RESPONDING):
            raise RuleViolation("life-safety-before-containment",
                                "a contained incident takes no new life-safety order; "
                                "lives at risk mean it is not contained")
        if unit_id:
            unit = self.state.unit(unit_id)
            if unit is None or unit.released:
                raise RuleViolation("order-to-deployed-unit",
                                    f"unit {unit_id} is not deployed on this incident")
            busy = [o for o in self.state.orders
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
        order_id = f"O-{len(self.state.orders) + 1}"
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
        due = due_deadlines(self.state, field_now)
        for order_id, deadline, due_at in due:
            which = "acknowledgement" if deadline == pb.DEADLINE_ACKNOWLEDGEMENT else "completion"
            # At the time it fell due; clamped only in a history recorded before every step
            # recorded the deadlines passed before it.
            cause = self._not_before_last_step(Cause(
                actor="dispatch", occurred_at=from_timestamp(due_at),
                reason=f"{which} deadline passed", causation_id=f"{self.id}/order/{order_id}"))
            self.record("order_overdue", pb.OrderOverdue(
                order_id=order_id, deadline=deadline, due_at=due_at,  # type: ignore[arg-type]
                escalated_to=self.state.commander), cause, now)
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
        if cause.actor != self.state.commander:
            commander = self.state.commander or "none yet"
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
        task_id = f"T-{len(self.state.recovery_tasks) + 1}"
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
        if self.state.reviewed:
            raise RuleViolation("reviewed-once", "the incident is already marked reviewed")
        self.record("reviewed", pb.IncidentReviewed(summary=summary), cause, now)

    def dismiss(self, cause: Cause, now: datetime) -> None:
        self._require("dismiss-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be dismissed as a false alarm")
        self.record("dismissed", pb.IncidentDismissed(), cause, now)

    def _require(self, rule: str, allowed: Sequence[int], why: str) -> None:
        if self.state.state not in allowed:
            raise RuleViolation(rule, f"{why} (incident {self.id} is "
                                      f"{state_name(self.state.state)})")
