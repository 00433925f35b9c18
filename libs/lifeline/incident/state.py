"""The incident as its history so far says it is: the one fold that dispatch runs as it
records and review as it replays."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from lifeline.common.v1 import common_pb2
from lifeline.events import from_timestamp
from lifeline.incident.parts import Amounts, Counts, Held, Meta, OrderState, Stint, TaskState
from lifeline.incident.phases import CLOSED_ORDER
from lifeline.incident.steps import STEPS, which
from lifeline.incident.v1 import incident_pb2 as pb

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
    location, a plan) are shared, never changed, and read through (`Held`), not copied;
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

    opened_at = Held[Timestamp | None]("opened_meta")
    declared_at = Held[Timestamp | None]("declared_meta")
    contained_at = Held[Timestamp | None]("contained_meta")
    recovery_started_at = Held[Timestamp | None]("recovery_started_meta")
    recovered_at = Held[Timestamp | None]("recovered_meta")
    closed_at = Held[Timestamp | None]("closed_meta")
    dismissed_at = Held[Timestamp | None]("dismissed_meta")
    reviewed_at = Held[Timestamp | None]("reviewed_meta")

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
        steps, which_event = STEPS, which
        try:
            for wrapper in wrappers:
                field = which_event(wrapper, "event")
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
            field = str(which(wrapper, "event"))
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

