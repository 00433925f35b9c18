"""Dispatch's gRPC face."""

from __future__ import annotations

import grpc
from lifeline.dispatch.v1 import dispatch_pb2 as pb
from lifeline.dispatch.v1 import dispatch_pb2_grpc
from lifeline.edge import cause_of, check_enum
from lifeline.events import Cause
from lifeline.incident.model import state_name
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_dispatch.application import DispatchApp

Ctx = grpc.aio.ServicerContext


def _cause(context: Ctx, runtime: Runtime, action: pb.Action) -> Cause:
    return cause_of(context, runtime.clock, actor=action.actor, occurred_at=action.occurred_at,
                    reason=action.reason)


class DispatchServicer(dispatch_pb2_grpc.DispatchServiceServicer):
    def __init__(self, runtime: Runtime, app: DispatchApp) -> None:
        self.rt, self.app = runtime, app

    async def ReportIncident(self, request: pb.ReportIncidentRequest, context: Ctx
                             ) -> pb.IncidentResponse:
        cause = _cause(context, self.rt, request.action)
        view = await self.rt.write(lambda: self.app.report(request, cause, self.rt.now()))
        return pb.IncidentResponse(incident=view)

    async def DeclareIncident(self, request: pb.DeclareIncidentRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        cause = _cause(context, self.rt, request.action)
        view = await self.rt.write(lambda: self.app.declare(request, cause, self.rt.now()))
        return pb.IncidentResponse(incident=view)

    async def _step(self, request: pb.IncidentStepRequest, context: Ctx, step: str
                    ) -> pb.IncidentResponse:
        cause = _cause(context, self.rt, request.action)
        view = await self.rt.write(
            lambda: self.app.step(request.incident_id, step, cause, self.rt.now()))
        return pb.IncidentResponse(incident=view)

    async def DismissIncident(self, request: pb.IncidentStepRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        return await self._step(request, context, "dismiss")

    async def MarkContained(self, request: pb.IncidentStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._step(request, context, "contain")

    async def StartRecovery(self, request: pb.IncidentStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._step(request, context, "start_recovery")

    async def CompleteRecovery(self, request: pb.IncidentStepRequest, context: Ctx
                               ) -> pb.IncidentResponse:
        return await self._step(request, context, "complete_recovery")

    async def CloseIncident(self, request: pb.IncidentStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._step(request, context, "close")

    async def GetIncident(self, request: pb.GetIncidentRequest, context: Ctx
                          ) -> pb.IncidentResponse:
        incident = await self.rt.read(lambda: self.app.incident(request.incident_id))
        return pb.IncidentResponse(incident=incident.view)

    async def ListIncidents(self, request: pb.ListIncidentsRequest, context: Ctx
                            ) -> pb.ListIncidentsResponse:
        check_enum("state", incident_pb2.IncidentState, request.state, optional=True)
        state = state_name(request.state) if request.state else ""
        incidents, token = await self.rt.views.page(
            "incident", incident_pb2.Incident, page_size=request.page.page_size,
            page_token=request.page.page_token, status=state)
        return pb.ListIncidentsResponse(incidents=incidents, next_page_token=token)


