"""Resources' use cases: keep the fleet, answer resource requests, release units."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import h3
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Recording
from lifeline.common.v1 import common_pb2
from lifeline.errors import AlreadyExists, InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate
from lifeline.idempotency import Attempt
from lifeline.identity import Identity
from lifeline.incident.v1 import incident_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.store import ServiceApplication, Taking
from lifeline.views import ViewRow

from lifeline_resources.coverage import (
    CoverageWatch,
    M,
    Requirement,
    as_view,
    covering,
    move_up,
    requirement_of,
    watch_id_of,
)
from lifeline_resources.depots import DIRECTORY_ID, Depot, DepotDirectory
from lifeline_resources.domain import (
    AVAILABLE,
    ResourceRequest,
    RoadClosure,
    Unit,
    request_id_of,
    road_id_of,
    status_name,
    unit_id_of,
)
from lifeline_resources.fleet import Candidate, Choice, Fleet, FleetUnit, Point
from lifeline_resources.roads import RoadNetwork
from lifeline_resources.stock import Stockroom

LEVELS = common_pb2.WarningLevel
#: RegisterUnits: a city's whole fleet fits in one call.
MAX_UNITS_PER_CALL = 10_000


def fleet_unit(view: pb.Unit, version: int = 0) -> FleetUnit:
    """What the fleet index keeps of a unit (version 0: as the read model showed it)."""
    return FleetUnit(id=view.id, kinds=(view.kind, *view.capabilities),
                     department=view.department, home=(view.home.lat, view.home.lon),
                     available=view.status in AVAILABLE, status=status_name(view.status),
                     incident_id=view.incident_id, version=version)


class ResourcesApp(Stockroom, ServiceApplication):
    name = "resources"

    def __init__(self, database_url: str, env: dict[str, Any] | None = None, *,
                 roads: RoadNetwork | None = None,
                 stale_after: timedelta = timedelta(minutes=5),
                 requirements: Sequence[Requirement] = ()) -> None:
        super().__init__(database_url, env)
        #: The road graph, if the city loaded one; where units are and what they can do
        #: (kept current by the projector).
        self.roads = roads
        self.fleet = Fleet(roads, stale_after)
        #: The city's coverage requirements (LIFELINE_COVERAGE), checked after each change.
        self.requirements: list[Requirement] = list(requirements)

    def record(self, *aggregates: Aggregate | None, taking: Taking | None = None,
               attempt: Attempt | None = None) -> list[Recording]:
        """Write, then show the fleet index what its units became at once (the projector
        would too, a moment later), so the next choice and coverage check see it."""
        recordings = super().record(*aggregates, taking=taking, attempt=attempt)
        if recordings:
            for aggregate in aggregates:
                if isinstance(aggregate, Unit):
                    self.fleet.upsert(fleet_unit(aggregate.view, aggregate.version))
        return recordings

    def register_unit(self, req: pb.RegisterUnitRequest, cause: Cause, now: datetime
                      ) -> tuple[pb.Unit, list[Recording]]:
        if self.find(Unit, unit_id_of(req.id)) is not None:
            raise AlreadyExists("unit", req.id)
        unit = Unit.register(req, cause, now)
        return unit.view, self.record(unit)

    def register_units(self, reqs: Sequence[pb.RegisterUnitRequest], cause: Cause,
                       now: datetime) -> tuple[pb.RegisterUnitsResponse, list[Recording]]:
        """Many at once, all or none, in one write; those already registered (or twice in
        the call) are left as they are and named in the answer."""
        if len(reqs) > MAX_UNITS_PER_CALL:
            raise InvalidArgument("units", f"at most {MAX_UNITS_PER_CALL} per call")
        ids = [unit_id_of(req.id) for req in reqs]
        stored = self.find_many(ids)
        answer = pb.RegisterUnitsResponse()
        added: dict[str, Unit] = {}
        for index, req in enumerate(reqs):
            if req.id in added or isinstance(stored.get(ids[index]), Unit):
                answer.existing.append(req.id)
                continue
            try:
                added[req.id] = Unit.register(req, cause, now)
            except InvalidArgument as error:
                problem = str(error).removeprefix(f"{error.field}: ")
                raise InvalidArgument(f"units[{index}].{error.field}", problem) from None
        answer.registered = len(added)
        return answer, self.record(*added.values())

    def get_unit(self, unit_id: str) -> Unit:
        return self.load(Unit, unit_id_of(unit_id), "unit", unit_id)

    def update_status(self, unit_id: str, status: int, cause: Cause, now: datetime,
                      by: Identity) -> tuple[pb.Unit, list[Recording]]:
        unit = self.get_unit(unit_id)
        by.require_department(unit.view.department, f"unit {unit_id}")
        unit.change_status(status, cause, now)
        return unit.view, self.record(unit)

    def answer_request(self, event: incident_pb2.ResourcesRequested, cause: Cause,
                       now: datetime, taking: Taking) -> tuple[None, list[Recording]]:
        """Assign, for each kind asked for, the available units that would arrive first;
        record what is missing."""
        request_id = request_id_of(event.request_id)
        # The request, the units the fleet index would choose and the depot directory in
        # one round trip (this is the dispatch path): a unit taken meanwhile is checked
        # and passed over below as before, then the next one is loaded by itself.
        place = (event.location.lat, event.location.lon)
        firsts: list[tuple[frozenset[str], Choice]] = []
        likely: set[str] = set()
        for need in event.requirements:
            choice = self.fleet.choose(need.unit_kind, need.count, place, now, exclude=likely)
            firsts.append((frozenset(likely), choice))
            likely = likely | {c.unit.id for c in choice.chosen}
        wants_stock = any(m.quantity for m in event.materials)
        loaded = self.find_many([request_id, *(unit_id_of(u) for u in sorted(likely)),
                                 *([DIRECTORY_ID] if wants_stock else [])])
        if isinstance(loaded.get(request_id), ResourceRequest):
            return None, self.record(taking=taking)
        incident_id = event.meta.aggregate_id
        taken: dict[str, Unit] = {}
        assignments: list[pb.Assignment] = []
        shortfalls: list[pb.Shortfall] = []
        for need, first in zip(event.requirements, firsts, strict=True):
            given = self._assign(need.unit_kind, need.count, place, now, taken,
                                 lambda unit: unit.assign(incident_id, event.request_id,
                                                          cause, now), first, loaded)
            assignments.extend(given)
            if len(given) < need.count:
                shortfalls.append(pb.Shortfall(unit_kind=need.unit_kind,
                                               missing=need.count - len(given)))
        directory = loaded.get(DIRECTORY_ID)
        materials = self.reserve_materials(
            event, cause, now, directory if isinstance(directory, DepotDirectory) else None)
        request = ResourceRequest.answer_with(event.request_id, incident_id, assignments,
                                              shortfalls, cause, now, materials.reservations,
                                              materials.shortfalls)
        return None, self.record(*taken.values(), *materials.depots, request,
                                 taking=taking)

    def _assign(self, kind: str, count: int, place: Point, now: datetime,
                taken: dict[str, Unit], assign: Callable[[Unit], None],
                first: tuple[frozenset[str], Choice] | None = None,
                loaded: dict[UUID, Aggregate] | None = None) -> list[pb.Assignment]:
        """The units of a kind that would arrive first, checked against their aggregates
        (the fleet index may lag a moment): one taken meanwhile is passed over and the
        next one asked for. `first` is the index's choice made beforehand, used while
        what it excluded is still what is excluded; `loaded` the units loaded with it."""
        given: list[pb.Assignment] = []
        refused: list[tuple[str, str]] = []
        loaded = loaded if loaded is not None else {}
        while len(given) < count:
            exclude = {*taken, *(u for u, _ in refused)}
            if first is not None and first[0] == exclude:
                choice = first[1]
            else:
                choice = self.fleet.choose(kind, count - len(given), place, now,
                                           exclude=exclude)
            first = None
            if not choice.chosen:
                break
            for candidate in choice.chosen:
                unit_id = candidate.unit.id
                unit = taken.get(unit_id)
                if unit is None:
                    key = unit_id_of(unit_id)
                    found = loaded.pop(key) if key in loaded else self.find(Unit, key)
                    unit = found if isinstance(found, Unit) else None
                if unit is None or not unit.available:
                    state = status_name(unit.view.status).lower() if unit else "gone"
                    refused.append((unit_id, f"{state} (taken meanwhile)"))
                    continue
                assign(unit)
                taken[unit_id] = unit
                given.append(assignment(candidate, choice, refused, len(given) + 1))
        return given

    def recommend(self, needs: Sequence[tuple[str, int]], place: Point, now: datetime
                  ) -> tuple[list[pb.Assignment], list[pb.Shortfall]]:
        """What answer_request would assign now, from the fleet index alone."""
        recommended, shortfalls, seen = [], [], set[str]()
        for kind, count in needs:
            choice = self.fleet.choose(kind, count, place, now, exclude=seen)
            for rank, candidate in enumerate(choice.chosen, start=1):
                seen.add(candidate.unit.id)
                recommended.append(assignment(candidate, choice, [], rank))
            if choice.missing:
                shortfalls.append(pb.Shortfall(unit_kind=kind, missing=choice.missing))
        return recommended, shortfalls

    def close_road(self, segment_id: str, reason: str, cause: Cause, now: datetime
                   ) -> tuple[pb.RoadSegment, list[Recording]]:
        self._road_network().require(segment_id)  # the projector applies the closure
        road = RoadClosure.close(self.find(RoadClosure, road_id_of(segment_id)), segment_id,
                                 reason, cause, now)
        return road.view, self.record(road)

    def reopen_road(self, segment_id: str, cause: Cause, now: datetime
                    ) -> tuple[pb.RoadSegment, list[Recording]]:
        self._road_network().require(segment_id)
        road = self.find(RoadClosure, road_id_of(segment_id))
        if road is None:
            return pb.RoadSegment(id=segment_id), []
        road.reopen(cause, now)
        return road.view, self.record(road)

    def warning_moved(self, warning_id: str, level: int, cause: Cause, now: datetime,
                      taking: Taking) -> tuple[None, list[Recording]]:
        """A warning raised, moved or cleared (NONE): close the segments of the road graph
        that close on its hazard and run through its cell while it is bad enough; reopen
        those it closed when it is not. An operator's closure is left as it is."""
        cell, hazard, *_ = [*warning_id.split("/"), "", ""]
        changed = []
        if self.roads is not None and h3.is_valid_cell(cell):
            for segment in self.roads.segments_in(cell):
                if segment.closes_on is None or segment.closes_on[0] != hazard:
                    continue
                road = self.find(RoadClosure, road_id_of(segment.id))
                if level >= segment.closes_on[1]:
                    if road is None or not road.view.closed:
                        changed.append(RoadClosure.close(
                            road, segment.id, f"warning {warning_id}: {hazard} "
                            f"{LEVELS.Name(level).removeprefix('WARNING_LEVEL_')}", cause, now,  # type: ignore[arg-type]
                            warning_id=warning_id))
                elif road is not None and road.view.closed and \
                        road.view.warning_id == warning_id:
                    road.reopen(cause, now)
                    changed.append(road)
        return None, self.record(*changed, taking=taking)

    def _road_network(self) -> RoadNetwork:
        if self.roads is None:
            raise RuleViolation("road-graph-loaded", "no road graph is loaded (set "
                                "LIFELINE_ROADS to the city's GeoJSON road graph)")
        return self.roads

    # ---- coverage ----

    def check_coverage(self, cause: Cause, now: datetime) -> tuple[None, list[Recording]]:
        """Open and close coverage gaps as the fleet stands now; suggest move-ups."""
        changed = []
        for requirement in self.requirements:
            count = len(covering(self.fleet, requirement, now))
            watch = self.find(CoverageWatch, watch_id_of(requirement.id))
            suggest = None
            if count < requirement.minimum and (watch is None or watch.pending is None):
                declined = watch.declined if watch is not None and watch.view.gap else ()
                suggest = move_up(self.fleet, requirement, self.requirements, now, declined)
            changed.append(CoverageWatch.check(watch, requirement, count, suggest, cause, now))
        return None, self.record(*changed)

    def coverage(self, now: datetime) -> list[pb.Coverage]:
        """Every requirement as it stands now, with its gap and move-up, if any."""
        out = []
        for requirement in self.requirements:
            view = as_view(requirement, len(covering(self.fleet, requirement, now)))
            watch = self.find(CoverageWatch, watch_id_of(requirement.id))
            if watch is not None and watch.view.gap:
                view.gap = True
                view.gap_since.CopyFrom(watch.view.gap_since)
                view.move_up.CopyFrom(watch.view.move_up)
            out.append(view)
        return out

    def decide_move_up(self, move_up_id: str, accept: bool, reason: str, cause: Cause,
                       now: datetime) -> tuple[pb.Coverage, list[Recording]]:
        requirement = requirement_of(move_up_id, self.requirements)
        watch = self.find(CoverageWatch, watch_id_of(requirement.id))
        if watch is None:
            raise NotFound("move-up", move_up_id)
        moved: Unit | None = None
        if accept and watch.pending is not None and watch.pending.id == move_up_id:
            moved = self.get_unit(watch.pending.unit_id)
            moved.move_station(watch.pending.to, move_up_id, cause, now)
        watch.decide(move_up_id, M.MOVE_UP_STATUS_ACCEPTED if accept
                     else M.MOVE_UP_STATUS_DECLINED, reason, cause, now)
        return watch.view, self.record(moved, watch)

    def release(self, unit_ids: Sequence[str], incident_id: str, cause: Cause, now: datetime,
                taking: Taking) -> tuple[None, list[Recording]]:
        units = [u for u in (self.find(Unit, unit_id_of(i)) for i in unit_ids) if u is not None]
        changed = [u for u in units if u.release(incident_id, cause, now)]
        return None, self.record(*changed, taking=taking)


def assignment(candidate: Candidate, choice: Choice, refused: list[tuple[str, str]],
               rank: int) -> pb.Assignment:
    return pb.Assignment(
        unit_id=candidate.unit.id, unit_kind=choice.kind,
        distance_km=round(candidate.distance_km, 3),
        eta_seconds=round(candidate.eta_seconds, 1), basis=choice.basis, rank=rank,
        origin=candidate.origin_label,
        passed_over=[pb.PassedOver(unit_id=u, reason=why)
                     for u, why in [*refused, *choice.passed_over]])


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, Unit):
        u = aggregate.view
        return [ViewRow("unit", u.id, u, status=status_name(u.status), category=u.kind,
                        lat=u.home.lat, lon=u.home.lon)]
    if isinstance(aggregate, CoverageWatch):
        return [ViewRow("coverage", aggregate.view.requirement_id, aggregate.view,
                        status="GAP" if aggregate.view.gap else "MET",
                        category=aggregate.view.unit_kind)]
    if isinstance(aggregate, RoadClosure):
        return [ViewRow("road", aggregate.view.id, aggregate.view,
                        status="CLOSED" if aggregate.view.closed else "OPEN")]
    if isinstance(aggregate, Depot):
        d = aggregate.view
        return [ViewRow("depot", d.id, d, category=d.department, lat=d.position.lat,
                        lon=d.position.lon)]
    return []
