"""A fixed response table for domain tests, independent of the shipped plan files."""

from __future__ import annotations

from lifeline.incident.response import Response
from lifeline.incident.v1 import incident_pb2 as pb

TABLE = {
    "urban_flooding": {"rescue_team": 1, "pump_truck": 1, "ambulance": 1, "police_car": 1},
    "high_rise_fire": {"fire_engine": 2, "rescue_team": 1, "ambulance": 1, "police_car": 1},
    "gas_leak": {"fire_engine": 1, "police_car": 1, "ambulance": 1},
    "chemical_spill": {"fire_engine": 1, "rescue_team": 1, "ambulance": 1, "police_car": 1},
    "traffic_accident": {"ambulance": 2, "police_car": 1, "fire_engine": 1},
    "infectious_disease": {"ambulance": 2},
}
MULTIPLIER = {pb.GRADE_IV: 1, pb.GRADE_III: 1, pb.GRADE_II: 2, pb.GRADE_I: 3}


def response_for(hazard_type: str, grade: int) -> Response:
    """Units only: no plan, no orders (those have tests of their own)."""
    return Response(units=[pb.UnitRequirement(unit_kind=kind, count=count * MULTIPLIER[grade])  # type: ignore[index]
                           for kind, count in TABLE[hazard_type].items()])
