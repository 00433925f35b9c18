"""The parts of an incident's state the fold keeps: a unit's stint, an order, a recovery
task, each read through the event that started it."""

from __future__ import annotations

from typing import Any, Generic, Self, TypeVar, cast

from google.protobuf.timestamp_pb2 import Timestamp

from lifeline.common.v1 import common_pb2
from lifeline.incident.v1 import incident_pb2 as pb

Meta = common_pb2.EventMeta
#: Quantities by name, in the order first named: unit kinds (count) or materials
#: (quantity and the unit it is counted in, as first given).
Counts = dict[str, int]
Amounts = dict[str, tuple[int, str]]

T = TypeVar("T")


class Held(Generic[T]):
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

    unit_kind = Held[str]("start", "unit_kind")
    distance_km = Held[float]("start", "distance_km")
    assigned_at = Held[Timestamp]("start_meta")
    on_scene_at = Held[Timestamp | None]("on_scene_meta")

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

    department = Held[str]("start", "department")
    unit_id = Held[str]("start", "unit_id")
    tier = Held[pb.OrderTier.ValueType]("start", "tier")
    instruction = Held[str]("start", "instruction")
    life_safety = Held[bool]("start", "life_safety")
    plan_order_id = Held[str]("start", "plan_order_id")
    acknowledge_by = Held[Timestamp]("start", "acknowledge_by")
    complete_by = Held[Timestamp]("start", "complete_by")
    issued_by = Held[str]("start_meta", "actor")
    issued_at = Held[Timestamp]("start_meta")
    acknowledged_at = Held[Timestamp | None]("acknowledged_meta")
    completed_at = Held[Timestamp | None]("completed_meta")
    verified_at = Held[Timestamp | None]("verified_meta")

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

    kind = Held[pb.RecoveryTaskKind.ValueType]("start", "kind")
    owner = Held[str]("start", "owner")
    description = Held[str]("start", "description")
    done_at = Held[Timestamp | None]("done_meta")

    def __init__(self, added: Any, meta: Meta) -> None:
        super().__init__(added, meta)
        self.id: str = added.task_id
        self.done, self.done_meta = False, cast(Meta | None, None)

    def message(self) -> pb.RecoveryTask:
        return pb.RecoveryTask(id=self.id, kind=self.kind, owner=self.owner,
                               description=self.description, done=self.done,
                               done_at=self.done_at)

