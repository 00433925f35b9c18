"""Resources' use cases for depots and stock: register and restock depots, reserve a
request's materials, take reports of what incidents consumed or returned, and put back
what a closed incident still held."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from eventsourcing.persistence import Recording
from lifeline.errors import AlreadyExists, InvalidArgument
from lifeline.events import Cause
from lifeline.identity import Identity
from lifeline.incident.v1 import incident_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.store import ServiceApplication, Taking

from lifeline_resources.depots import (
    DIRECTORY_ID,
    Depot,
    DepotDirectory,
    MaterialAnswer,
    depot_id_of,
    reserve_nearest,
)

CLOSED_REASON = "incident closed: what it still held goes back to stock"


class Stockroom(ServiceApplication):
    """The depot half of ResourcesApp."""

    def depot(self, depot_id: str) -> Depot:
        if not depot_id.strip():
            raise InvalidArgument("id", "is required")
        return self.load(Depot, depot_id_of(depot_id), "depot", depot_id)

    def register_depot(self, req: pb.RegisterDepotRequest, cause: Cause, now: datetime
                       ) -> tuple[pb.Depot, list[Recording]]:
        depot = Depot.register(req, cause, now)
        if self.find(Depot, depot.id) is not None:
            raise AlreadyExists("depot", req.id)
        directory = DepotDirectory.listing(self.find(DepotDirectory, DIRECTORY_ID),
                                           depot.view, cause, now)
        return depot.view, self.record(depot, directory)

    def restock(self, depot_id: str, materials: Sequence[pb.Material], cause: Cause,
                now: datetime) -> tuple[pb.Depot, list[Recording]]:
        depot = self.depot(depot_id)
        depot.restock(materials, cause, now)
        return depot.view, self.record(depot)

    def report_material_use(self, depot_id: str, incident_id: str, use: int,
                            materials: Sequence[pb.Material], cause: Cause, now: datetime,
                            by: Identity) -> tuple[pb.Depot, list[Recording]]:
        if not incident_id.strip():
            raise InvalidArgument("incident_id", "is required")
        depot = self.depot(depot_id)
        by.require_department(depot.view.department, f"depot {depot_id}")
        depot.report_use(incident_id, use, materials, cause, now)
        return depot.view, self.record(depot)

    def reserve_materials(self, event: incident_pb2.ResourcesRequested, cause: Cause,
                          now: datetime, directory: DepotDirectory | None = None
                          ) -> MaterialAnswer:
        """Reserve a request's materials from the nearest depots that hold them; the caller
        records the depots with its answer, in one transaction. `directory`: the depot
        directory as the caller loaded it just now (else it is loaded here)."""
        needs = [pb.Material(name=m.name, quantity=m.quantity, unit=m.unit)
                 for m in event.materials if m.quantity]
        if not needs:
            return MaterialAnswer()
        if directory is None:
            directory = self.find(DepotDirectory, DIRECTORY_ID)
        ranked = directory.nearest(event.location) if directory is not None else []
        # Loaded one by one, nearest first, only until every need is covered.
        depots = ((depot, km) for depot, km in
                  ((self.find(Depot, depot_id_of(i)), km) for i, km in ranked)
                  if depot is not None)
        return reserve_nearest(needs, depots, event.meta.aggregate_id, event.request_id,
                               cause, now)

    def return_reserved(self, incident_id: str, cause: Cause, now: datetime,
                        taking: Taking) -> tuple[None, list[Recording]]:
        """The incident closed: whatever it still holds in any depot goes back to stock."""
        directory = self.find(DepotDirectory, DIRECTORY_ID)
        ids = list(directory.positions) if directory is not None else []
        depots = [d for d in (self.find(Depot, depot_id_of(i)) for i in ids) if d is not None]
        cause = replace(cause, reason=CLOSED_REASON)
        returned = [d for d in depots if d.return_all(incident_id, cause, now)]
        return None, self.record(*returned, taking=taking)
