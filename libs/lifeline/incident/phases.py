"""The lifecycle's groups of states and statuses the rules speak of, and their names for
people."""

from __future__ import annotations

from lifeline.common.v1 import common_pb2
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


def grade_name(grade: int) -> str:
    return pb.Grade.Name(grade).removeprefix("GRADE_")  # type: ignore[arg-type]


def state_name(state: int) -> str:
    return pb.IncidentState.Name(state).removeprefix("INCIDENT_STATE_")  # type: ignore[arg-type]

