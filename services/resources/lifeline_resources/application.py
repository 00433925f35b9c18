"""Resources' use cases: keep the fleet, answer resource requests, release units."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from eventsourcing.persistence import Recording, Tracking
from lifeline.errors import AlreadyExists
from lifeline.events import Cause, ProtoAggregate
from lifeline.identity import Identity
from lifeline.incident.v1 import incident_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow

from lifeline_resources.depots import Depot
from lifeline_resources.domain import (
    ResourceRequest,
    Unit,
    request_id_of,
    status_name,
    unit_id_of,
)
from lifeline_resources.stock import Stockroom

#: Candidates per unit kind, nearest first: (unit id, distance in km).
Candidates = dict[str, list[tuple[str, float]]]


class MoreCandidates(Exception):
    """The nearest few candidates of a kind did not cover a need (the read model showed
    units available that were not): ask again with every candidate of that kind."""


class ResourcesApp(Stockroom, ServiceApplication):
    name = "resources"

    def register_unit(self, req: pb.RegisterUnitRequest, cause: Cause, now: datetime
                      ) -> tuple[pb.Unit, list[Recording]]:
        if self.find(Unit, unit_id_of(req.id)) is not None:
            raise AlreadyExists("unit", req.id)
        unit = Unit.register(req, cause, now)
        return unit.view, self.record(unit)

    def get_unit(self, unit_id: str) -> Unit:
        return self.load(Unit, unit_id_of(unit_id), "unit", unit_id)

    def update_status(self, unit_id: str, status: int, cause: Cause, now: datetime,
                      by: Identity) -> tuple[pb.Unit, list[Recording]]:
        unit = self.get_unit(unit_id)
        by.require_department(unit.view.department, f"unit {unit_id}")
        unit.change_status(status, cause, now)
        return unit.view, self.record(unit)

    def answer_request(self, event: incident_pb2.ResourcesRequested, candidates: Candidates,
                       cause: Cause, now: datetime, tracking: Tracking,
                       partial: frozenset[str] = frozenset()) -> tuple[None, list[Recording]]:
        """Assign the nearest available units of each kind; record what is missing.
        `partial` names the kinds whose candidates are only the nearest few."""
        if self.find(ResourceRequest, request_id_of(event.request_id)) is not None:
            return None, self.record(tracking=tracking)
        incident_id = event.meta.aggregate_id
        taken: dict[str, Unit] = {}
        assignments: list[pb.Assignment] = []
        shortfalls: list[pb.Shortfall] = []
        for need in event.requirements:
            given = 0
            for unit_id, km in candidates.get(need.unit_kind, []):
                if given == need.count:
                    break
                unit = taken.get(unit_id) or self.find(Unit, unit_id_of(unit_id))
                # The read model may lag: the aggregate has the last word on availability.
                if unit is None or not unit.available:
                    continue
                unit.assign(incident_id, event.request_id, cause, now)
                taken[unit_id] = unit
                assignments.append(pb.Assignment(unit_id=unit_id, unit_kind=need.unit_kind,
                                                 distance_km=round(km, 3)))
                given += 1
            if given < need.count and need.unit_kind in partial:
                raise MoreCandidates(need.unit_kind)
            if given < need.count:
                shortfalls.append(pb.Shortfall(unit_kind=need.unit_kind,
                                               missing=need.count - given))
        materials = self.reserve_materials(event, cause, now)
        request = ResourceRequest.answer_with(event.request_id, incident_id, assignments,
                                              shortfalls, cause, now, materials.reservations,
                                              materials.shortfalls)
        return None, self.record(*taken.values(), *materials.depots, request,
                                 tracking=tracking)

    def release(self, unit_ids: Sequence[str], incident_id: str, cause: Cause, now: datetime,
                tracking: Tracking) -> tuple[None, list[Recording]]:
        units = [u for u in (self.find(Unit, unit_id_of(i)) for i in unit_ids) if u is not None]
        changed = [u for u in units if u.release(incident_id, cause, now)]
        return None, self.record(*changed, tracking=tracking)


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, Unit):
        u = aggregate.view
        return [ViewRow("unit", u.id, u, status=status_name(u.status), category=u.kind,
                        lat=u.home.lat, lon=u.home.lon)]
    if isinstance(aggregate, Depot):
        d = aggregate.view
        return [ViewRow("depot", d.id, d, category=d.department, lat=d.position.lat,
                        lon=d.position.lon)]
    return []
