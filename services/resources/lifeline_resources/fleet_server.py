"""Resources' gRPC face for positions, recommendations and roads (mixed into
ResourcesServicer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from lifeline.edge import cause_of, check_location, check_name, required, time_field
from lifeline.errors import InvalidArgument, NotFound
from lifeline.events import to_timestamp
from lifeline.identity import caller
from lifeline.live import IN_MEMORY
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.runtime import Runtime
from lifeline.views import ViewRow

from lifeline_resources.application import ResourcesApp
from lifeline_resources.domain import ResourceRequest, request_id_of

Ctx = grpc.aio.ServicerContext
MAX_UNKNOWN_NAMED = 20
#: What WatchResources sends: the view kinds (and in-memory positions) by response field.
WATCHED: dict[str, type[Any]] = {"unit": pb.Unit, "road": pb.RoadSegment, "depot": pb.Depot,
                                 "coverage": pb.Coverage, "position": pb.UnitPosition}


class FleetRpcs:
    rt: Runtime[ResourcesApp]
    app: ResourcesApp

    async def ReportPositions(self, request_iterator: AsyncIterator[pb.ReportPositionsRequest],
                              context: Ctx) -> pb.ReportPositionsResponse:
        """Positions are kept in memory only: a report is a hint, the next one replaces it,
        and a unit whose reports stop is ranked from its station once they are stale."""
        answer = pb.ReportPositionsResponse()
        index = 0
        who = caller()
        async for batch in request_iterator:
            moved: list[ViewRow] = []
            for report in batch.reports:
                where = f"reports[{index}]"
                index += 1
                check_name(f"{where}.unit_id", report.unit_id)
                if not report.HasField("position"):
                    raise InvalidArgument(f"{where}.position", "is required")
                check_location(f"{where}.position", report.position)
                if who.scope and (unit := self.app.fleet.get(report.unit_id)) is not None:
                    who.require_department(unit.department, f"unit {report.unit_id}")
                at = (time_field(report, "measured_at", field=f"{where}.measured_at")
                      or self.rt.now())
                taken = self.app.fleet.report_position(
                    report.unit_id, (report.position.lat, report.position.lon), at)
                if taken is None:
                    if len(answer.unknown_units) < MAX_UNKNOWN_NAMED:
                        answer.unknown_units.append(report.unit_id)
                elif taken:
                    answer.accepted += 1
                    moved.append(ViewRow("position", report.unit_id, pb.UnitPosition(
                        unit_id=report.unit_id, position=report.position,
                        measured_at=to_timestamp(at))))
                else:
                    answer.outdated += 1
            self.rt.live.publish(moved, IN_MEMORY)
        return answer

    async def RecommendUnits(self, request: pb.RecommendUnitsRequest, context: Ctx
                             ) -> pb.RecommendUnitsResponse:
        if not request.HasField("location"):
            raise InvalidArgument("location", "is required")
        check_location("location", request.location)
        if not request.needs:
            raise InvalidArgument("needs", "name at least one unit kind and count")
        for i, need in enumerate(request.needs):
            check_name(f"needs[{i}].unit_kind", need.unit_kind)
            if not 1 <= need.count <= 100:
                raise InvalidArgument(f"needs[{i}].count", "must be from 1 to 100")
        recommended, shortfalls = self.app.recommend(
            [(n.unit_kind, n.count) for n in request.needs],
            (request.location.lat, request.location.lon), self.rt.now())
        return pb.RecommendUnitsResponse(recommended=recommended, shortfalls=shortfalls)

    async def GetRequest(self, request: pb.GetRequestRequest, context: Ctx
                         ) -> pb.GetRequestResponse:
        required(request, "id")
        found = await self.rt.read(
            lambda: self.app.find(ResourceRequest, request_id_of(request.id)))
        if found is None:
            raise NotFound("resource request", request.id[:64])
        return pb.GetRequestResponse(answer=found.answer)

    async def CloseRoad(self, request: pb.CloseRoadRequest, context: Ctx) -> pb.RoadResponse:
        required(request, "segment_id", "reason")
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: app.close_road(request.segment_id, request.reason, cause,
                                        self.rt.now()),
            lambda segment: pb.RoadResponse(segment=segment))

    async def ReopenRoad(self, request: pb.ReopenRoadRequest, context: Ctx) -> pb.RoadResponse:
        required(request, "segment_id")
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: app.reopen_road(request.segment_id, cause, self.rt.now()),
            lambda segment: pb.RoadResponse(segment=segment))

    async def ListCoverage(self, request: pb.ListCoverageRequest, context: Ctx
                           ) -> pb.ListCoverageResponse:
        coverage = await self.rt.read(lambda: self.app.coverage(self.rt.now()))
        return pb.ListCoverageResponse(coverage=[c for c in coverage
                                                 if c.gap or not request.gaps_only])

    async def AcceptMoveUp(self, request: pb.MoveUpDecisionRequest, context: Ctx
                           ) -> pb.CoverageResponse:
        return await self._decide(request, accept=True)

    async def DeclineMoveUp(self, request: pb.MoveUpDecisionRequest, context: Ctx
                            ) -> pb.CoverageResponse:
        required(request, "reason")
        return await self._decide(request, accept=False)

    async def _decide(self, request: pb.MoveUpDecisionRequest, accept: bool
                      ) -> pb.CoverageResponse:
        required(request, "move_up_id")
        cause = cause_of(self.rt.clock)
        answer = await self.rt.command(
            lambda app: app.decide_move_up(request.move_up_id, accept, request.reason, cause,
                                            self.rt.now()),
            lambda coverage: pb.CoverageResponse(coverage=coverage))
        if accept:  # the unit moved: does the gap close, does another open?
            await self.coverage_changed()
        return answer

    async def WatchResources(self, request: pb.WatchResourcesRequest, context: Ctx
                             ) -> AsyncIterator[pb.WatchResourcesResponse]:
        with self.rt.live.watch(*WATCHED, what="resources", rpc=context) as watch:
            # Watching before the snapshots are read, so nothing falls between; a change
            # between two kinds' snapshots may come twice, and a view replaces itself.
            positions = []
            for kind, message_type in WATCHED.items():
                if message_type is pb.UnitPosition:
                    continue  # positions ride on the units of the snapshot
                views, position = await self.rt.views.snapshot(kind, message_type)
                positions.append(position)
                for view in views:
                    if isinstance(view, pb.Unit):
                        view = self.with_position(view)
                    yield _resource_change(kind, view, initial=True)
            yield pb.WatchResourcesResponse(caught_up=True)
            async for change in watch.changes(after=min(positions)):
                yield _resource_change(change.kind, change.doc)

    async def coverage_changed(self) -> None:
        """A unit came, went or moved: check the city's coverage again."""
        if self.app.requirements:
            cause = cause_of(self.rt.clock)
            await self.rt.write(lambda: self.app.check_coverage(cause, self.rt.now()))

    def with_position(self, unit: pb.Unit) -> pb.Unit:
        """The unit as stored, with the position it last reported."""
        known = self.app.fleet.get(unit.id)
        if known is not None and known.position is not None and known.position_at:
            unit.position.lat, unit.position.lon = known.position
            unit.position_at.CopyFrom(to_timestamp(known.position_at))
        return unit


def _resource_change(kind: str, view: Message, initial: bool = False
                     ) -> pb.WatchResourcesResponse:
    answer = pb.WatchResourcesResponse(initial=initial)
    getattr(answer, kind).CopyFrom(view)
    return answer
