"""Resources' gRPC face."""

from __future__ import annotations

import grpc
from lifeline import names
from lifeline.common.v1 import common_pb2, names_pb2
from lifeline.edge import cause_of, check_enum, required
from lifeline.identity import caller
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_resources.application import ResourcesApp
from lifeline_resources.depot_server import DepotRpcs
from lifeline_resources.domain import status_name
from lifeline_resources.fleet_server import FleetRpcs

Ctx = grpc.aio.ServicerContext


class ResourcesServicer(DepotRpcs, FleetRpcs, resources_pb2_grpc.ResourcesServiceServicer):
    def __init__(self, runtime: Runtime[ResourcesApp], app: ResourcesApp) -> None:
        self.rt, self.app = runtime, app

    async def ListKnownNames(self, request: names_pb2.ListKnownNamesRequest, context: Ctx
                             ) -> names_pb2.ListKnownNamesResponse:
        return self.names.answer(request)

    async def RegisterUnit(self, request: pb.RegisterUnitRequest, context: Ctx
                           ) -> pb.RegisterUnitResponse:
        self._check_names("", request, self.names.in_registry())
        cause = cause_of(self.rt.clock)
        answer = await self.rt.command(
            lambda app: app.register_unit(request, cause, self.rt.now()),
            lambda unit: pb.RegisterUnitResponse(unit=unit))
        await self.coverage_changed()
        return answer

    async def RegisterUnits(self, request: pb.RegisterUnitsRequest, context: Ctx
                            ) -> pb.RegisterUnitsResponse:
        known = self.names.in_registry()
        for index, unit in enumerate(request.units):
            self._check_names(f"units[{index}].", unit, known)
            # A name one unit brings in is known to those after it.
            known.setdefault(names.UNIT_KIND, set()).update((unit.kind, *unit.capabilities))
            known.setdefault(names.DEPARTMENT, set()).add(unit.department)
        cause = cause_of(self.rt.clock)
        answer = await self.rt.command(
            lambda app: app.register_units(request.units, cause, self.rt.now()),
            lambda answer: answer)
        if answer.registered:
            await self.coverage_changed()
        return answer

    def _check_names(self, where: str, request: pb.RegisterUnitRequest,
                     known: names.Names) -> None:
        new = request.new_names
        self.names.check(f"{where}kind", names.UNIT_KIND, request.kind, new_names=new,
                         registered=known)
        for index, capability in enumerate(request.capabilities):
            self.names.check(f"{where}capabilities[{index}]", names.UNIT_KIND, capability,
                             new_names=new, registered=known)
        self.names.check(f"{where}department", names.DEPARTMENT, request.department,
                         new_names=new, registered=known)

    async def GetUnit(self, request: pb.GetUnitRequest, context: Ctx) -> pb.GetUnitResponse:
        unit = await self.rt.views.require("unit", request.id, pb.Unit)
        return pb.GetUnitResponse(unit=self.with_position(unit))

    async def ListUnits(self, request: pb.ListUnitsRequest, context: Ctx
                        ) -> pb.ListUnitsResponse:
        check_enum("status", common_pb2.UnitStatus, request.status, optional=True)
        units, token = await self.rt.views.page(
            "unit", pb.Unit, page_size=request.page.page_size, page_token=request.page.page_token,
            status=status_name(request.status) if request.status else "", category=request.kind)
        return pb.ListUnitsResponse(units=[self.with_position(u) for u in units],
                                    next_page_token=token)

    async def UpdateUnitStatus(self, request: pb.UpdateUnitStatusRequest, context: Ctx
                               ) -> pb.UpdateUnitStatusResponse:
        required(request, "id")
        check_enum("status", common_pb2.UnitStatus, request.status)
        cause = cause_of(self.rt.clock, actor=request.actor, occurred_at=request.occurred_at)
        answer = await self.rt.command(
            lambda app: app.update_status(request.id, request.status, cause, self.rt.now(),
                                           caller()),
            lambda unit: pb.UpdateUnitStatusResponse(unit=unit))
        await self.coverage_changed()
        return answer
