"""Measures across incidents: what an evaluator reads of many histories at once.

Percentiles are nearest-rank (p90 is the smallest value that at least 90% of the values do
not exceed), the convention of the field's "within X minutes for 90% of calls" pledges.
Every figure comes from the histories alone, through the same fold as one incident's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lifeline.events import from_timestamp
from lifeline.incident.phases import CLOSED_ORDER
from lifeline.incident.state import IncidentState
from lifeline.review.v1 import review_pb2 as pb

#: Field-time phases (Evaluation's fields), in the order an incident reaches them.
PHASES = ("warning_to_declared", "declared_to_first_order", "declared_to_first_assignment",
          "response_time", "declared_to_contained", "recovery_duration", "total_duration")
#: The software's own latency, in recorded time.
SOFTWARE = ("recorded_declared_to_requested", "recorded_declared_to_first_assignment")


@dataclass(frozen=True)
class IncidentFilter:
    """Which incidents a question covers; an empty criterion admits all."""

    opened_from: datetime | None = None
    opened_before: datetime | None = None
    categories: frozenset[int] = frozenset()
    hazards: frozenset[str] = frozenset()
    grades: frozenset[int] = frozenset()
    grid_cells: frozenset[str] = frozenset()
    plan_ids: frozenset[str] = frozenset()
    #: pb.HistoryOrigin: all, live only or imported only.
    origin: int = pb.HISTORY_ORIGIN_UNSPECIFIED

    def admits(self, view: IncidentState, imported: bool) -> bool:
        if (self.origin == pb.HISTORY_ORIGIN_LIVE and imported) or \
                (self.origin == pb.HISTORY_ORIGIN_IMPORTED and not imported):
            return False
        opened = from_timestamp(view.opened_at or Timestamp())
        return ((self.opened_from is None or opened >= self.opened_from)
                and (self.opened_before is None or opened < self.opened_before)
                and (not self.categories or view.category in self.categories)
                and (not self.hazards or (view.hazard_type or view.hazard) in self.hazards)
                and (not self.grades or view.grade in self.grades)
                and (not self.grid_cells or view.grid_cell in self.grid_cells)
                and (not self.plan_ids or (view.plan and view.plan.plan_id) in self.plan_ids))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value that at least q of the values do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def phase_stats(phase: str, seconds: Sequence[float]) -> pb.PhaseStats:
    stats = pb.PhaseStats(phase=phase, count=len(seconds))
    if seconds:
        stats.p50.CopyFrom(_duration(percentile(seconds, 0.5)))
        stats.p90.CopyFrom(_duration(percentile(seconds, 0.9)))
        stats.max.CopyFrom(_duration(max(seconds)))
        stats.mean.CopyFrom(_duration(sum(seconds) / len(seconds)))
    return stats


def _has(message: Any, field: str) -> bool:
    return bool(message.HasField(field))


@dataclass(frozen=True)
class Case:
    """One incident as measured: its evaluation and its final state."""

    evaluation: pb.Evaluation
    view: IncidentState


#: Evaluations returned per question at most (a gRPC answer stays well under 4 MiB).
MAX_EVALUATIONS = 10_000


def summarize(cases: Iterable[Case], include_incidents: bool = False
              ) -> pb.IncidentsEvaluation:
    out = pb.IncidentsEvaluation()
    phases: dict[str, list[float]] = defaultdict(list)
    software: dict[str, list[float]] = defaultdict(list)
    acks: dict[str, list[float]] = defaultdict(list)
    departments: dict[str, pb.DepartmentStats] = {}
    units: dict[str, pb.UnitUse] = {}
    materials: dict[tuple[str, str], float] = defaultdict(float)
    cells: dict[str, pb.CellCount] = {}
    for case in cases:
        e, v = case.evaluation, case.view
        out.incidents += 1
        for name in PHASES:
            if _has(e, name):
                phases[name].append(getattr(e, name).ToTimedelta().total_seconds())
        for name in SOFTWARE:
            if _has(e, name):
                software[name].append(getattr(e, name).ToTimedelta().total_seconds())
        cell = cells.get(v.grid_cell)
        if cell is None:
            cell = cells[v.grid_cell] = pb.CellCount(grid_cell=v.grid_cell)
            if v.location is not None:
                cell.lat, cell.lon = v.location.lat, v.location.lon
        cell.incidents += 1
        if e.response_time_target_minutes and e.HasField("response_time"):
            out.with_target += 1
            cell.with_target += 1
            if e.response_time_met:
                out.within_target += 1
                cell.within_target += 1
        elif e.response_time_target_minutes:
            out.not_reached += 1
        if e.from_warning and v.declared_at is not None:
            out.warnings_confirmed += 1
        elif e.from_warning and v.dismissed_at is not None:
            out.warnings_dismissed += 1
        for order in v.orders:
            d = departments.setdefault(order.department,
                                       pb.DepartmentStats(department=order.department))
            d.orders_issued += 1
            d.orders_overdue += bool(order.overdue)
            d.orders_closed += order.status in CLOSED_ORDER
            if order.acknowledged_at is not None:
                d.orders_acknowledged += 1
                acks[order.department].append(
                    (order.acknowledged_at.ToDatetime() - order.issued_at.ToDatetime())
                    .total_seconds())
        for unit in v.units:
            units.setdefault(unit.unit_kind, pb.UnitUse(unit_kind=unit.unit_kind)).assigned += 1
        for kind, count in v.shortfalls.items():
            units.setdefault(kind, pb.UnitUse(unit_kind=kind)).short += count
        for reserved in v.materials_reserved:
            materials[(reserved.material.name, reserved.material.unit)] += \
                reserved.material.quantity
        if include_incidents and len(out.evaluations) < MAX_EVALUATIONS:
            out.evaluations.append(e)
        elif include_incidents:
            out.evaluations_left_out += 1
    out.phases.extend(phase_stats(name, phases[name]) for name in PHASES)
    out.software.extend(phase_stats(name, software[name]) for name in SOFTWARE)
    if out.with_target:
        out.percent_within_target = 100 * out.within_target / out.with_target
    judged = out.warnings_confirmed + out.warnings_dismissed
    if judged:
        out.warning_precision = out.warnings_confirmed / judged
    for name in sorted(departments):
        d = departments[name]
        if d.orders_issued:
            d.closure_rate = d.orders_closed / d.orders_issued
        if acks[name]:
            d.acknowledgement_p50.CopyFrom(_duration(percentile(acks[name], 0.5)))
            d.acknowledgement_p90.CopyFrom(_duration(percentile(acks[name], 0.9)))
        out.departments.append(d)
    out.units.extend(units[k] for k in sorted(units))
    out.materials.extend(pb.MaterialUse(name=name, unit=unit, quantity=quantity)
                         for (name, unit), quantity in sorted(materials.items()))
    out.cells.extend(sorted(cells.values(), key=lambda c: (-c.incidents, c.grid_cell)))
    return out
