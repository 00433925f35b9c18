"""Dispatch's own knowledge: which units a hazard needs at each grade.

A small built-in table for now; versioned emergency plans (plans/) replace it."""

from __future__ import annotations

from lifeline.errors import InvalidArgument
from lifeline.incident.v1 import incident_pb2 as pb

RESPONSE_TABLE: dict[str, dict[str, int]] = {
    "urban_flooding": {"rescue_team": 1, "pump_truck": 1, "ambulance": 1, "police_car": 1},
    "high_rise_fire": {"fire_engine": 2, "rescue_team": 1, "ambulance": 1, "police_car": 1},
    "gas_leak": {"fire_engine": 1, "police_car": 1, "ambulance": 1},
    "chemical_spill": {"fire_engine": 1, "rescue_team": 1, "ambulance": 1, "police_car": 1},
    "traffic_accident": {"ambulance": 2, "police_car": 1, "fire_engine": 1},
    "infectious_disease": {"ambulance": 2},
}
#: More severe grades need more of each kind (I is the most severe).
GRADE_MULTIPLIER = {pb.GRADE_IV: 1, pb.GRADE_III: 1, pb.GRADE_II: 2, pb.GRADE_I: 3}


def requirements_for(hazard_type: str, grade: int) -> list[pb.UnitRequirement]:
    table = RESPONSE_TABLE.get(hazard_type)
    if table is None:
        raise InvalidArgument("hazard_type", f"no response table for {hazard_type!r}; known: "
                                             f"{', '.join(sorted(RESPONSE_TABLE))}")
    factor = GRADE_MULTIPLIER[grade]  # type: ignore[index]
    return [pb.UnitRequirement(unit_kind=kind, count=count * factor)
            for kind, count in table.items()]
