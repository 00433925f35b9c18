"""What the plan in force says an incident of one grade needs, as the Incident takes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lifeline.errors import InvalidArgument
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.plans import PlanLibrary


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


_TIERS = {"city": pb.ORDER_TIER_CITY, "district": pb.ORDER_TIER_DISTRICT,
         "community": pb.ORDER_TIER_COMMUNITY}


def response_for(plans: PlanLibrary, hazard_type: str, grade: int) -> Response:
    """The plan in force for a hazard type at a grade, as the Incident takes it."""
    plan = plans.plan_for(hazard_type)
    if plan is None:
        raise InvalidArgument("hazard_type", f"no emergency plan covers {hazard_type!r}; plans "
                                             f"cover: {', '.join(sorted(plans.hazard_types()))}")
    spec = plan.for_grade(grade)
    return Response(
        units=spec.requirements(), plan_id=plan.id, plan_version=plan.version,
        content_hash=plan.content_hash,
        response_time_target_minutes=spec.response_time_target_minutes, notify=spec.notify,
        materials=[pb.Material(name=m.name, quantity=m.quantity, unit=m.unit)
                   for m in spec.materials],
        orders=[PlanOrder(o.id, o.department, _TIERS[o.tier], o.instruction, o.life_safety,
                          o.ack_minutes, o.complete_minutes) for o in spec.orders])
