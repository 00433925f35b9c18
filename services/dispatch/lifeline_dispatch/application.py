"""Dispatch's use cases: incidents from warnings and reports through to closure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import uuid4

from eventsourcing.persistence import Recording
from lifeline.common.v1 import common_pb2
from lifeline.dispatch.v1 import dispatch_pb2
from lifeline.edge import check_enum, check_location
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, ProtoAggregate
from lifeline.incident.aggregate import Incident, incident_id_for_warning, parse_incident_id
from lifeline.incident.deadlines import field_time_offset, next_deadline
from lifeline.incident.phases import state_name
from lifeline.incident.response import response_for
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2
from lifeline.plans import PlanLibrary, default_library
from lifeline.resources.v1 import resources_pb2
from lifeline.store import ServiceApplication, Taking
from lifeline.views import ViewRow

Result = tuple[pb.Incident, list[Recording]]
#: ReportIncidents: a call-taking system's queue, in calls of at most this many.
MAX_REPORTS_PER_CALL = 1_000


def _reported(req: dispatch_pb2.ReportIncidentRequest, cause: Cause, now: datetime
              ) -> Incident:
    if not req.hazard.strip():
        raise InvalidArgument("hazard", "is required")
    if not req.HasField("location"):
        raise InvalidArgument("location", "is required")
    check_location("location", req.location)
    return Incident.report(uuid4(), req.hazard, req.location, req.description,
                           req.reporter or cause.actor, "", cause, now)


class DispatchApp(ServiceApplication):
    name = "dispatch"

    def __init__(self, database_url: str, plans: PlanLibrary | None = None) -> None:
        super().__init__(database_url)
        self.plans = plans or default_library()

    def incident(self, incident_id: str) -> Incident:
        return self.load(Incident, parse_incident_id(incident_id), "incident", incident_id)

    # ---- commands from people and systems (gRPC) ----

    def report(self, req: dispatch_pb2.ReportIncidentRequest, cause: Cause, now: datetime
               ) -> Result:
        incident = _reported(req, cause, now)
        return incident.view, self.record(incident)

    def report_many(self, reports: Sequence[tuple[dispatch_pb2.ReportIncidentRequest, Cause]],
                    now: datetime) -> tuple[list[pb.Incident], list[Recording]]:
        """A call-taking system's queue: each report checked as `report` checks it, all
        or none, in one write; the incidents in the reports' order."""
        if len(reports) > MAX_REPORTS_PER_CALL:
            raise InvalidArgument("reports", f"at most {MAX_REPORTS_PER_CALL} per call")
        incidents = []
        for index, (req, cause) in enumerate(reports):
            try:
                incidents.append(_reported(req, cause, now))
            except InvalidArgument as error:
                problem = str(error).removeprefix(f"{error.field}: ")
                raise InvalidArgument(f"reports[{index}].{error.field}", problem) from None
        return [i.view for i in incidents], self.record(*incidents)

    def declare(self, req: dispatch_pb2.DeclareIncidentRequest, cause: Cause, now: datetime
                ) -> Result:
        check_enum("category", pb.Category, req.category)
        check_enum("grade", pb.Grade, req.grade)
        response = response_for(self.plans, req.hazard_type, req.grade)
        return self.act(req.incident_id, lambda i: i.declare(
            req.category, req.hazard_type, req.grade, response, cause, now))

    def regrade(self, incident_id: str, grade: int, cause: Cause, now: datetime) -> Result:
        check_enum("grade", pb.Grade, grade)
        incident = self.incident(incident_id)
        response = response_for(self.plans, incident.state.hazard_type, grade)
        incident.regrade(grade, response, cause, now)
        return incident.view, self.record(incident)

    def act(self, incident_id: str, command: Callable[[Incident], object]) -> Result:
        """Run one command on one incident and record what it decided, all or nothing."""
        incident = self.incident(incident_id)
        command(incident)
        return incident.view, self.record(incident)

    def record_overdue(self, incident_ids: Sequence[str],
                       field_now: Callable[[pb.Incident], datetime | None], now: datetime
                       ) -> tuple[int, list[Recording]]:
        """Record every deadline passed on these incidents by the field time now on each
        one's own field clock (read from the incident as it is, not the read model)."""
        changed = []
        for incident_id in incident_ids:
            incident = self.incident(incident_id)
            field_time = field_now(incident.view)
            if field_time is not None and incident.record_overdue(field_time, now):
                changed.append(incident)
        return len(changed), self.record(*changed)

    # ---- reactions to other services' events (NATS) ----

    def open_for_warning(self, event: monitor_pb2.WarningRaised, cause: Cause, now: datetime,
                         taking: Taking) -> list[Recording]:
        # The id is derived from the warning, so however often it is delivered: one incident.
        if self.find(Incident, incident_id_for_warning(event.warning_id)) is not None:
            return self.record(taking=taking)
        incident = Incident.open_for_warning(event.warning_id, event.hazard, event.level,
                                             event.location, event.grid_cell, cause, now)
        return self.record(incident, taking=taking)

    def warning_moved(self, warning_id: str, level: int, cause: Cause, now: datetime,
                      taking: Taking) -> list[Recording]:
        incident = self.find(Incident, incident_id_for_warning(warning_id))
        if incident is not None:
            if level == common_pb2.WARNING_LEVEL_NONE:
                incident.clear_warning(cause, now)
            else:
                incident.change_warning_level(level, cause, now)
        return self.record(incident, taking=taking)

    def request_answered(self, answer: resources_pb2.RequestAnswered, cause: Cause,
                         now: datetime, taking: Taking) -> list[Recording]:
        incident = self.find(Incident, parse_incident_id(answer.incident_id))
        if incident is not None:
            for a in answer.assignments:
                incident.assign_unit(answer.request_id, a.unit_id, a.unit_kind, a.distance_km,
                                     cause, now)
            for s in answer.shortfalls:
                incident.record_shortfall(answer.request_id, s.unit_kind, s.missing, cause, now)
            for r in answer.reservations:
                incident.reserve_material(answer.request_id, r.depot_id, pb.Material(
                    name=r.material.name, quantity=r.material.quantity, unit=r.material.unit),
                    r.distance_km, cause, now)
            for m in answer.material_shortfalls:
                incident.record_material_shortfall(answer.request_id, pb.Material(
                    name=m.material, quantity=m.missing, unit=m.unit), cause, now)
        return self.record(incident, taking=taking)

    def material_used(self, report: resources_pb2.MaterialsConsumed, consumed: bool,
                      cause: Cause, now: datetime, taking: Taking) -> list[Recording]:
        """A depot's department reported what the incident consumed or brought back."""
        try:
            incident = self.find(Incident, parse_incident_id(report.incident_id))
        except InvalidArgument:
            incident = None  # not one of ours: resources reserves only for incidents
        if incident is not None:
            for m in report.materials:
                incident.record_material_use(report.depot_id, pb.Material(
                    name=m.name, quantity=m.quantity, unit=m.unit), consumed, cause, now)
        return self.record(incident, taking=taking)

    def unit_reported(self, incident_id: str, unit_id: str, status: int, cause: Cause,
                      now: datetime, taking: Taking) -> list[Recording]:
        incident = self.find(Incident, parse_incident_id(incident_id)) if incident_id else None
        if incident is not None:
            if status == common_pb2.UNIT_STATUS_AVAILABLE:
                incident.release_unit(unit_id, cause, now)
            else:
                incident.report_unit_status(unit_id, status, cause, now)
        return self.record(incident, taking=taking)


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, Incident):
        v = aggregate.view
        return [ViewRow("incident", v.id, v, status=state_name(v.state),
                        category=v.hazard_type or v.hazard, lat=v.location.lat,
                        lon=v.location.lon, due=next_deadline(v),
                        field_offset=field_time_offset(v))]
    return []
