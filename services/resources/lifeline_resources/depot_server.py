"""Resources' gRPC face for depots and stock (mixed into ResourcesServicer)."""

from __future__ import annotations

import grpc
from lifeline import names
from lifeline.edge import cause_of, check_enum, required
from lifeline.identity import caller
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.runtime import Runtime

from lifeline_resources.application import ResourcesApp

Ctx = grpc.aio.ServicerContext


class DepotRpcs:
    rt: Runtime[ResourcesApp]
    app: ResourcesApp
    #: The unit kinds and departments resources knows (set by bootstrap).
    names: names.Catalog

    async def RegisterDepot(self, request: pb.RegisterDepotRequest, context: Ctx
                            ) -> pb.RegisterDepotResponse:
        self.names.check("department", names.DEPARTMENT, request.department,
                         new_names=request.new_names)
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: app.register_depot(request, cause, self.rt.now()),
            lambda depot: pb.RegisterDepotResponse(depot=depot))

    async def GetDepot(self, request: pb.GetDepotRequest, context: Ctx) -> pb.GetDepotResponse:
        depot = await self.rt.views.require("depot", request.id, pb.Depot)
        return pb.GetDepotResponse(depot=depot)

    async def ListDepots(self, request: pb.ListDepotsRequest, context: Ctx
                         ) -> pb.ListDepotsResponse:
        depots, token = await self.rt.views.page(
            "depot", pb.Depot, page_size=request.page.page_size,
            page_token=request.page.page_token, category=request.department)
        return pb.ListDepotsResponse(depots=depots, next_page_token=token)

    async def RestockDepot(self, request: pb.RestockDepotRequest, context: Ctx
                           ) -> pb.RestockDepotResponse:
        required(request, "id")
        cause = cause_of(self.rt.clock, occurred_at=request.occurred_at)
        return await self.rt.command(
            lambda app: app.restock(request.id, request.materials, cause, self.rt.now()),
            lambda depot: pb.RestockDepotResponse(depot=depot))

    async def ReportMaterialUse(self, request: pb.ReportMaterialUseRequest, context: Ctx
                                ) -> pb.ReportMaterialUseResponse:
        required(request, "depot_id", "incident_id")
        check_enum("use", pb.MaterialUse, request.use)
        cause = cause_of(self.rt.clock, occurred_at=request.occurred_at)
        return await self.rt.command(
            lambda app: app.report_material_use(request.depot_id, request.incident_id,
                                                 request.use, request.materials, cause,
                                                 self.rt.now(), caller()),
            lambda depot: pb.ReportMaterialUseResponse(depot=depot))
