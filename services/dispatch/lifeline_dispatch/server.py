"""Dispatch's gRPC face."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import grpc
from lifeline import names
from lifeline.clock import FieldClock
from lifeline.common.v1 import names_pb2
from lifeline.dispatch.v1 import dispatch_pb2 as pb
from lifeline.dispatch.v1 import dispatch_pb2_grpc
from lifeline.edge import cause_of, check_enum, required
from lifeline.errors import InvalidArgument, PermissionDenied
from lifeline.events import Cause
from lifeline.identity import caller
from lifeline.incident.aggregate import Incident
from lifeline.incident.phases import CLOSED_ORDER, UNFINISHED_ORDER, state_name
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_dispatch.application import DispatchApp

Ctx = grpc.aio.ServicerContext
#: What a watch's snapshot holds: every state but closed and dismissed.
ACTIVE_STATES = [state_name(s) for s in incident_pb2.IncidentState.values()
                 if s not in (incident_pb2.INCIDENT_STATE_UNSPECIFIED,
                              incident_pb2.INCIDENT_STATE_CLOSED,
                              incident_pb2.INCIDENT_STATE_DISMISSED)]


def _answer(view: incident_pb2.Incident) -> pb.IncidentResponse:
    return pb.IncidentResponse(incident=view)


Step = Callable[[Incident, Cause, datetime], object]


def _own_order(order_id: str, step: Step) -> Step:
    """A department acts only on the orders addressed to it."""
    def run(incident: Incident, cause: Cause, now: datetime) -> object:
        order = next((o for o in incident.view.orders if o.id == order_id), None)
        if order is not None:
            caller().require_department(order.department, f"order {order_id}")
        return step(incident, cause, now)

    return run


class DispatchServicer(dispatch_pb2_grpc.DispatchServiceServicer):
    def __init__(self, runtime: Runtime[DispatchApp], app: DispatchApp, field: FieldClock) -> None:
        self.rt, self.app, self.field = runtime, app, field
        # Dispatch's names are the plans' (and the city's configured ones).
        self.names = names.Catalog(
            "dispatch", (names.HAZARD, names.DEPARTMENT, names.UNIT_KIND),
            names.from_plans(app.plans), names.configured(runtime.settings.configured_names))

    def _cause(self, action: pb.Action) -> Cause:
        cause = cause_of(self.rt.clock, actor=action.actor, occurred_at=action.occurred_at,
                         reason=action.reason)
        self.field.observe(cause.occurred_at)  # in drills, commands move field time on
        return cause

    async def _act(self, incident_id: str, action: pb.Action,
                   command: Step
                   ) -> pb.IncidentResponse:
        cause = self._cause(action)
        return await self.rt.command(lambda app: app.act(
            incident_id, lambda incident: command(incident, cause, self.rt.now())), _answer)

    async def ReportIncident(self, request: pb.ReportIncidentRequest, context: Ctx
                             ) -> pb.IncidentResponse:
        self.names.check("hazard", names.HAZARD, request.hazard)
        cause = self._cause(request.action)
        return await self.rt.command(
            lambda app: app.report(request, cause, self.rt.now()), _answer)

    async def ReportIncidents(self, request: pb.ReportIncidentsRequest, context: Ctx
                              ) -> pb.ReportIncidentsResponse:
        reports = []
        for index, report in enumerate(request.reports):
            self.names.check(f"reports[{index}].hazard", names.HAZARD, report.hazard)
            try:
                reports.append((report, self._cause(report.action)))
            except PermissionDenied as error:  # the one report that names another actor
                raise PermissionDenied(f"reports[{index}].action.{error}") from None
        return await self.rt.command(
            lambda app: app.report_many(reports, self.rt.now()),
            lambda incidents: pb.ReportIncidentsResponse(incidents=incidents))

    async def DeclareIncident(self, request: pb.DeclareIncidentRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        self.names.check("hazard_type", names.HAZARD, request.hazard_type)
        cause = self._cause(request.action)
        return await self.rt.command(
            lambda app: app.declare(request, cause, self.rt.now()), _answer)

    async def RegradeIncident(self, request: pb.RegradeIncidentRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        cause = self._cause(request.action)
        return await self.rt.command(lambda app: app.regrade(
            request.incident_id, request.grade, cause, self.rt.now()), _answer)

    async def DismissIncident(self, request: pb.IncidentStepRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action, Incident.dismiss)

    async def MarkContained(self, request: pb.IncidentStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action, Incident.contain)

    async def StartRecovery(self, request: pb.IncidentStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               Incident.start_recovery)

    async def CompleteRecovery(self, request: pb.IncidentStepRequest, context: Ctx
                               ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               Incident.complete_recovery)

    async def CloseIncident(self, request: pb.IncidentStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action, Incident.close)

    async def HandOverCommand(self, request: pb.HandOverCommandRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.hand_over(request.to_commander, c, n))

    async def ReleaseUnits(self, request: pb.ReleaseUnitsRequest, context: Ctx
                           ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.release_units(list(request.unit_ids), c, n))

    async def IssueOrder(self, request: pb.IssueOrderRequest, context: Ctx
                         ) -> pb.IncidentResponse:
        required(request, "department", "instruction")
        self.names.check("department", names.DEPARTMENT, request.department)
        check_enum("tier", incident_pb2.OrderTier, request.tier)
        if not 0 < request.acknowledge_within_minutes < request.complete_within_minutes:
            raise InvalidArgument("complete_within_minutes", "give an acknowledgement deadline "
                                  "above 0 and a later completion deadline")
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.issue_order(
                                   request.department, request.unit_id, request.tier,
                                   request.instruction, request.life_safety,
                                   request.acknowledge_within_minutes,
                                   request.complete_within_minutes, c, n))

    async def AcknowledgeOrder(self, request: pb.OrderStepRequest, context: Ctx
                               ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               _own_order(request.order_id, lambda i, c, n: i.acknowledge_order(
                                   request.order_id, c, n)))

    async def ReportOrderProgress(self, request: pb.ReportOrderProgressRequest, context: Ctx
                                  ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               _own_order(request.order_id, lambda i, c, n: i.report_order_progress(
                                   request.order_id, request.note, request.percent, c, n)))

    async def CompleteOrder(self, request: pb.OrderStepRequest, context: Ctx
                            ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               _own_order(request.order_id, lambda i, c, n: i.complete_order(
                                   request.order_id, c, n)))

    async def VerifyOrder(self, request: pb.OrderStepRequest, context: Ctx
                          ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.verify_order(request.order_id, c, n))

    async def CancelOrder(self, request: pb.OrderStepRequest, context: Ctx
                          ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.cancel_order(request.order_id, c, n))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Ctx
                         ) -> pb.ListOrdersResponse:
        incident = await self.rt.read(lambda: self.app.incident(request.incident_id))
        orders = sorted(incident.view.orders, key=lambda o: (
            not (o.overdue and o.status in UNFINISHED_ORDER), o.status in CLOSED_ORDER,
            int(o.id.removeprefix("O-"))))
        return pb.ListOrdersResponse(orders=orders)

    async def ReportSituation(self, request: pb.ReportSituationRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        report = incident_pb2.SituationReported(
            dead=request.dead, injured=request.injured, missing=request.missing,
            affected=request.affected, evacuated=request.evacuated, area_km2=request.area_km2,
            text=request.text)
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.report_situation(report, c, n))

    async def AddRecoveryTask(self, request: pb.AddRecoveryTaskRequest, context: Ctx
                              ) -> pb.IncidentResponse:
        required(request, "owner", "description")
        check_enum("kind", incident_pb2.RecoveryTaskKind, request.kind)
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.add_recovery_task(
                                   request.kind, request.owner, request.description, c, n))

    async def CompleteRecoveryTask(self, request: pb.CompleteRecoveryTaskRequest, context: Ctx
                                   ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.complete_recovery_task(request.task_id, c, n))

    async def MarkReviewed(self, request: pb.MarkReviewedRequest, context: Ctx
                           ) -> pb.IncidentResponse:
        return await self._act(request.incident_id, request.action,
                               lambda i, c, n: i.mark_reviewed(request.summary, c, n))

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

    async def WatchIncidents(self, request: pb.WatchIncidentsRequest, context: Ctx
                             ) -> AsyncIterator[pb.WatchIncidentsResponse]:
        with self.rt.live.watch("incident", what="incident",
                                 rpc=context) as watch:
            # Watching before the snapshot is read, so nothing falls between the two.
            active, position = await self.rt.views.snapshot(
                "incident", incident_pb2.Incident, ACTIVE_STATES)
            for incident in active:
                yield pb.WatchIncidentsResponse(incident=incident, initial=True)
            yield pb.WatchIncidentsResponse(caught_up=True)
            async for change in watch.changes(after=position):
                assert isinstance(change.doc, incident_pb2.Incident)
                yield pb.WatchIncidentsResponse(incident=change.doc)

    async def ListKnownNames(self, request: names_pb2.ListKnownNamesRequest, context: Ctx
                             ) -> names_pb2.ListKnownNamesResponse:
        return self.names.answer(request)
