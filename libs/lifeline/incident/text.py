"""Incident events and durations in words, for timelines people read (the tables are
lifeline.cli.views')."""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration

from lifeline.common.v1 import common_pb2
from lifeline.events import event_of
from lifeline.incident.phases import state_name
from lifeline.incident.v1 import incident_pb2 as pb


def _enum(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def level(value: int) -> str:
    return _enum(common_pb2.WarningLevel, value, "WARNING_LEVEL_")


def _material(m: pb.Material) -> str:
    return f"{m.quantity} {m.unit} {m.name}"


def describe(wrapper: pb.IncidentEvent) -> str:
    field, e = event_of(wrapper)
    match field:
        case "opened":
            return f"opened for warning {e.warning_id} ({e.hazard}, {level(e.level)})"
        case "reported":
            return f"reported by {e.reporter}: {e.hazard} {e.description}".rstrip()
        case "warning_level_changed":
            return f"warning now {level(e.level)}"
        case "warning_cleared":
            return "warning cleared"
        case "declared":
            return (f"declared {_enum(pb.Category, e.category, 'CATEGORY_').lower()} "
                    f"{e.hazard_type}, grade {_enum(pb.Grade, e.grade, 'GRADE_')}")
        case "resources_requested":
            wanted = ", ".join([f"{r.count} {r.unit_kind}" for r in e.requirements]
                               + [_material(m) for m in e.materials])
            return f"requested {wanted}"
        case "unit_assigned":
            return f"unit {e.unit_id} ({e.unit_kind}) assigned, {e.distance_km:.1f} km away"
        case "resource_shortfall":
            return f"short of {e.missing} {e.unit_kind}"
        case "material_reserved":
            return (f"{_material(e.material)} reserved at depot {e.depot_id}, "
                    f"{e.distance_km:.1f} km away")
        case "material_shortfall":
            return f"short of {_material(e.material)}"
        case "material_consumed" | "material_returned":
            return (f"{_material(e.material)} {field.removeprefix('material_')} "
                    f"(depot {e.depot_id})")
        case "unit_status_reported":
            status = _enum(common_pb2.UnitStatus, e.status, "UNIT_STATUS_").lower()
            return f"unit {e.unit_id} {status.replace('_', ' ')}"
        case "unit_released":
            return f"unit {e.unit_id} released"
        case "grade_changed":
            return (f"grade {_enum(pb.Grade, e.from_grade, 'GRADE_')} -> "
                    f"{_enum(pb.Grade, e.to_grade, 'GRADE_')}: {wrapper.grade_changed.meta.reason}")
        case "response_reopened":
            return (f"response re-opened ({state_name(e.from_state).lower()} -> responding) "
                    f"by escalation {_enum(pb.Grade, e.from_grade, 'GRADE_')} -> "
                    f"{_enum(pb.Grade, e.to_grade, 'GRADE_')}: {e.meta.reason}")
        case "plan_activated":
            return (f"plan {e.plan_id} v{e.plan_version} in force at grade "
                    f"{_enum(pb.Grade, e.grade, 'GRADE_')} (sha256 {e.content_hash[:10]}); "
                    f"notify {', '.join(e.departments_notified)}")
        case "commander_assigned":
            return (f"command handed from {e.previous_commander} to {e.commander}"
                    if e.previous_commander else f"{e.commander} takes command")
        case "order_issued":
            to = e.department + (f"/{e.unit_id}" if e.unit_id else "")
            flag = " [life-safety]" if e.life_safety else ""
            return f"order {e.order_id} to {to}{flag}: {e.instruction}"
        case "order_acknowledged" | "order_completed" | "order_verified" | "order_cancelled":
            return f"order {e.order_id} {field.removeprefix('order_')}"
        case "order_progress_reported":
            return f"order {e.order_id} at {e.percent}%: {e.note}".rstrip(": ")
        case "order_overdue":
            which = _enum(pb.Deadline, e.deadline, "DEADLINE_").lower()
            return f"order {e.order_id} OVERDUE ({which}), escalated to {e.escalated_to}"
        case "situation_reported":
            return (f"situation: {e.dead} dead, {e.injured} injured, {e.missing} missing, "
                    f"{e.evacuated} evacuated, {e.affected} affected")
        case "recovery_task_added":
            return f"recovery task {e.task_id} for {e.owner}: {e.description}"
        case "recovery_task_completed":
            return f"recovery task {e.task_id} done"
        case _:
            return field.replace("_", " ")


def duration(value: Duration | None) -> str:
    """3725 s -> '1h 02m 05s'; empty when the phase was never reached."""
    if value is None:
        return "-"
    total = int(value.ToTimedelta().total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"
