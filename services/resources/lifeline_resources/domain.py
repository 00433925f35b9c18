"""Resources' domain: units and the requests dispatch sends for them.

A unit serves at most one incident at a time; the Unit aggregate enforces it, so even a
stale read model can never make resources give one unit to two incidents."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.edge import check_location, check_name
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, meta_of, stable_id
from lifeline.incident.phases import DEPLOYED
from lifeline.resources.v1 import resources_pb2 as pb

U = common_pb2.UnitStatus
MAX_CAPABILITIES = 16
MAX_CREW = 100
#: Free to be assigned: in quarters, on the road, or returning from a job.
AVAILABLE = (U.UNIT_STATUS_AVAILABLE, U.UNIT_STATUS_AVAILABLE_ON_ROAD, U.UNIT_STATUS_RETURNING)
#: The statuses a crew or an operator may report next, from each status. Assignment is
#: dispatch's (through a resource request); going free from an incident releases the unit
#: from it, and the incident is told.
NEXT: dict[int, tuple[int, ...]] = {
    U.UNIT_STATUS_AVAILABLE: (U.UNIT_STATUS_AVAILABLE_ON_ROAD, U.UNIT_STATUS_OUT_OF_SERVICE),
    U.UNIT_STATUS_AVAILABLE_ON_ROAD: (U.UNIT_STATUS_AVAILABLE, U.UNIT_STATUS_RETURNING,
                                      U.UNIT_STATUS_OUT_OF_SERVICE),
    U.UNIT_STATUS_RETURNING: (U.UNIT_STATUS_AVAILABLE, U.UNIT_STATUS_AVAILABLE_ON_ROAD,
                              U.UNIT_STATUS_OUT_OF_SERVICE),
    U.UNIT_STATUS_OUT_OF_SERVICE: (U.UNIT_STATUS_AVAILABLE, U.UNIT_STATUS_AVAILABLE_ON_ROAD),
    U.UNIT_STATUS_ASSIGNED: (U.UNIT_STATUS_EN_ROUTE, U.UNIT_STATUS_ON_SCENE, *AVAILABLE),
    U.UNIT_STATUS_EN_ROUTE: (U.UNIT_STATUS_ON_SCENE, *AVAILABLE),
    U.UNIT_STATUS_ON_SCENE: (U.UNIT_STATUS_TRANSPORTING, *AVAILABLE),
    U.UNIT_STATUS_TRANSPORTING: (U.UNIT_STATUS_AT_HOSPITAL, *AVAILABLE),
    U.UNIT_STATUS_AT_HOSPITAL: (U.UNIT_STATUS_TRANSPORTING, *AVAILABLE),
}
EARTH_RADIUS_KM = 6371.0088


def status_name(status: int) -> str:
    return common_pb2.UnitStatus.Name(cast(Any, status)).removeprefix("UNIT_STATUS_")


def distance_km(a: common_pb2.GeoPoint, b_lat: float, b_lon: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(a.lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def unit_id_of(unit_id: str) -> UUID:
    return stable_id("unit", unit_id)


def request_id_of(request_id: str) -> UUID:
    return stable_id("request", request_id)


class Unit(ProtoAggregate):
    EVENT_TYPE = pb.UnitEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        at = meta_of(wrapper).occurred_at
        # The field time of the unit's latest step in service. Registration is the fleet
        # office's, at service time, not a step in the field: a drill may send a unit
        # registered today to an incident told in past field time.
        self.last_step = None if field == "registered" else from_timestamp(at)
        if field == "registered":
            self.view = pb.Unit()
            self.view.CopyFrom(event.unit)
        elif field == "assigned":
            self.view.status = U.UNIT_STATUS_ASSIGNED
            self.view.incident_id = event.incident_id
        elif field == "status_changed":
            self.view.status = event.status
        elif field == "released":
            self.view.status = event.status or U.UNIT_STATUS_AVAILABLE
            self.view.incident_id = ""
        elif field == "station_changed":
            self.view.home.CopyFrom(event.home)
            return  # its status has not changed
        self.view.status_since.CopyFrom(at)

    @classmethod
    def register(cls, req: pb.RegisterUnitRequest, cause: Cause, now: datetime) -> Unit:
        for field in ("id", "kind", "department"):
            if not getattr(req, field).strip():
                raise InvalidArgument(field, "is required")
        if not req.HasField("home"):
            raise InvalidArgument("home", "is required")
        check_location("home", req.home)
        for index, capability in enumerate(req.capabilities):
            check_name(f"capabilities[{index}]", capability)
        if len(req.capabilities) > MAX_CAPABILITIES:
            raise InvalidArgument("capabilities", f"at most {MAX_CAPABILITIES}")
        if req.crew_size > MAX_CREW:
            raise InvalidArgument("crew_size", f"at most {MAX_CREW}")
        capabilities = [c for c in dict.fromkeys(req.capabilities) if c != req.kind]
        unit = pb.Unit(id=req.id, kind=req.kind, home=req.home, department=req.department,
                       status=U.UNIT_STATUS_AVAILABLE, capabilities=capabilities,
                       crew_size=req.crew_size)
        return cls.start(unit_id_of(req.id), "registered", pb.UnitRegistered(unit=unit), cause,
                         now)

    @property
    def available(self) -> bool:
        return self.view.status in AVAILABLE

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds it counts for: its own, then its capabilities."""
        return (self.view.kind, *self.view.capabilities)

    def _not_before_last_step(self, cause: Cause) -> Cause:
        """Dispatch's events (assignments, releases) are never refused, which would wedge
        the inbox: they keep their field time, clamped to the unit's last step."""
        last = self.last_step
        return replace(cause, occurred_at=last) if last and cause.occurred_at < last else cause

    def assign(self, incident_id: str, request_id: str, cause: Cause, now: datetime) -> None:
        if not self.available:
            raise RuleViolation("one-incident-per-unit",
                                f"unit {self.view.id} is {status_name(self.view.status)}"
                                + (f" for incident {self.view.incident_id}"
                                   if self.view.incident_id else ""))
        self.record("assigned", pb.UnitAssigned(unit_id=self.view.id, incident_id=incident_id,
                                                request_id=request_id),
                    self._not_before_last_step(cause), now)

    def change_status(self, status: int, cause: Cause, now: datetime) -> None:
        current = self.view.status
        if status == current:
            return
        last = self.last_step
        if last is not None and cause.occurred_at < last:
            raise RuleViolation("time-runs-forward",
                                f"{status_name(status).lower()} at "
                                f"{cause.occurred_at.isoformat()} is before unit "
                                f"{self.view.id}'s last step at {last.isoformat()}")
        if status == U.UNIT_STATUS_ASSIGNED:
            raise RuleViolation("assigned-by-dispatch",
                                "units are assigned through an incident's resource request")
        if status in DEPLOYED and current not in DEPLOYED:
            raise RuleViolation("moves-only-when-assigned",
                                f"unit {self.view.id} is {status_name(current)}: it goes "
                                f"{status_name(status)} only for an incident it is assigned to")
        if status == U.UNIT_STATUS_OUT_OF_SERVICE and current in DEPLOYED:
            raise RuleViolation("release-before-out-of-service",
                                f"unit {self.view.id} serves incident {self.view.incident_id};"
                                " it must be released first")
        if status not in NEXT.get(current, ()):
            allowed = ", ".join(status_name(s) for s in NEXT.get(current, ()))
            raise RuleViolation("unit-status-transition",
                                f"unit {self.view.id} is {status_name(current)}: next it can "
                                f"be {allowed}, not {status_name(status)}")
        if status in AVAILABLE and current in DEPLOYED:
            self.release(self.view.incident_id, cause, now, status)
            return
        self.record("status_changed", pb.UnitStatusChanged(
            unit_id=self.view.id, status=status, incident_id=self.view.incident_id),  # type: ignore[arg-type]
            cause, now)

    def move_station(self, home: common_pb2.GeoPoint, suggestion_id: str, cause: Cause,
                     now: datetime) -> None:
        """A move-up: the unit now waits at (and is ranked from) another station."""
        if not self.available:
            raise RuleViolation("move-up-unit-available",
                                f"unit {self.view.id} is {status_name(self.view.status)}; "
                                "only an available unit moves up")
        self.record("station_changed", pb.UnitStationChanged(
            unit_id=self.view.id, home=home, suggestion_id=suggestion_id), cause, now)

    def release(self, incident_id: str, cause: Cause, now: datetime,
                status: int = U.UNIT_STATUS_AVAILABLE) -> bool:
        """Free the unit from its incident (dispatch released it, or its crew reported it
        free: then `status` says where it is, and dispatch tells the incident)."""
        if self.view.incident_id != incident_id or self.view.status not in DEPLOYED:
            return False
        self.record("released", pb.UnitReleased(unit_id=self.view.id, incident_id=incident_id,
                                                status=status),  # type: ignore[arg-type]
                    self._not_before_last_step(cause), now)
        return True


class ResourceRequest(ProtoAggregate):
    """Dispatch's request for units, answered once."""

    EVENT_TYPE = pb.RequestEvent

    def when(self, wrapper: Message) -> None:
        self.answer = event_of(wrapper)[1]

    @classmethod
    def answer_with(cls, request_id: str, incident_id: str,
                    assignments: list[pb.Assignment], shortfalls: list[pb.Shortfall],
                    cause: Cause, now: datetime, reservations: Sequence[pb.Reservation] = (),
                    material_shortfalls: Sequence[pb.MaterialShortfall] = ()
                    ) -> ResourceRequest:
        return cls.start(request_id_of(request_id), "answered", pb.RequestAnswered(
            request_id=request_id, incident_id=incident_id, assignments=assignments,
            shortfalls=shortfalls, reservations=reservations,
            material_shortfalls=material_shortfalls), cause, now)


def road_id_of(segment_id: str) -> UUID:
    return stable_id("road", segment_id)


class RoadClosure(ProtoAggregate):
    """One segment of the loaded road graph: closed (and why) or open."""

    EVENT_TYPE = pb.RoadEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        if not hasattr(self, "view"):
            self.view = pb.RoadSegment(id=event.segment_id)
        self.view.closed = field == "closed"
        self.view.reason = event.reason if field == "closed" else ""
        self.view.warning_id = event.warning_id if field == "closed" else ""

    @classmethod
    def close(cls, found: RoadClosure | None, segment_id: str, reason: str, cause: Cause,
              now: datetime, warning_id: str = "") -> RoadClosure:
        event = pb.RoadClosed(segment_id=segment_id, reason=reason, warning_id=warning_id)
        if found is None:
            return cls.start(road_id_of(segment_id), "closed", event, cause, now)
        if not found.view.closed or found.view.reason != reason \
                or found.view.warning_id != warning_id:
            found.record("closed", event, cause, now)
        return found

    def reopen(self, cause: Cause, now: datetime) -> None:
        if self.view.closed:
            self.record("reopened", pb.RoadReopened(segment_id=self.view.id), cause, now)
