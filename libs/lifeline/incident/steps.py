"""The fold's steps: one function per incident event type, each changing the state as the
event says (state, the event, its meta)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, cast

from google.protobuf.message import Message

from lifeline.common.v1 import common_pb2
from lifeline.incident.parts import Amounts, Counts, Meta, OrderState, Stint, TaskState
from lifeline.incident.v1 import incident_pb2 as pb

if TYPE_CHECKING:
    from lifeline.incident.state import IncidentState

# Enum values as the module's constants: through the enum's wrapper (S.X) each costs a
# Python-level __getattr__, more than the rest of a step.

Step = Callable[["IncidentState", Any, Meta], None]
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
which = cast(Callable[[Message, str], str | None], pb.IncidentEvent.WhichOneof)
#: Each event type (the wrapper's oneof field) and the step that applies it.
STEPS: dict[str, Step] = {
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
