"""Monitor's gRPC face for what reaches people and agencies: parties' inboxes, escalation
chains, CAP 1.2 out and in. Part of `MonitorServicer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import grpc
from eventsourcing.persistence import Recording
from lifeline.edge import acting, cause_of, check_enum, required
from lifeline.errors import InvalidArgument
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.runtime import Runtime
from lifeline.validation import MAX_SKEW

from lifeline_monitor import alarms, inbox
from lifeline_monitor.application import MonitorApp
from lifeline_monitor.cap import decode, feed, intake
from lifeline_monitor.rosters import check_inbox as check_party

Ctx = grpc.aio.ServicerContext


class AlertingServicer:
    rt: Runtime[MonitorApp]
    app: MonitorApp
    #: Now on the field clock escalation steps fall due on (set by bootstrap).
    field_now: Callable[[], datetime | None]

    def _field_now(self) -> datetime | None:
        found = getattr(self, "field_now", None)
        return found() if found is not None else self.rt.now()

    async def ListInbox(self, request: pb.ListInboxRequest, context: Ctx
                        ) -> pb.ListInboxResponse:
        required(request, "party")
        check_party("party", request.party)
        found = await inbox.notifications(self.rt.views, request.party, request.include_done)
        return inbox.ordered(found, self._field_now())

    async def FollowInbox(self, request: pb.FollowInboxRequest, context: Ctx
                          ) -> AsyncIterator[pb.PartyNotification]:
        required(request, "party")
        check_party("party", request.party)
        seconds = alarms.seconds("duration", request.duration, 0.001,
                                 inbox.MAX_FOLLOW_SECONDS) or inbox.MAX_FOLLOW_SECONDS
        async for notification in inbox.follow(self.rt.views, request.party, seconds,
                                               context.done):
            yield notification

    async def GetEscalation(self, request: pb.GetEscalationRequest, context: Ctx
                            ) -> pb.GetEscalationResponse:
        required(request, "warning_id")
        chain = await self.rt.views.require("escalation", request.warning_id, pb.Escalation)
        return pb.GetEscalationResponse(escalation=chain)

    async def GetCapAlerts(self, request: pb.GetCapAlertsRequest, context: Ctx
                           ) -> pb.GetCapAlertsResponse:
        required(request, "warning_id")
        alerts = await self.rt.read(lambda: feed.alerts_for(self.app, request.warning_id))
        return pb.GetCapAlertsResponse(alerts=alerts)

    async def ImportCapAlert(self, request: pb.ImportCapAlertRequest, context: Ctx
                             ) -> pb.ImportCapAlertResponse:
        resolution = self.app.grid_resolution
        incoming = decode.parse(request.xml, resolution)
        if incoming.sent > self.rt.now() + MAX_SKEW:
            raise InvalidArgument("xml", f"sent: {incoming.sent.isoformat()} is in the future "
                                         f"(this service's clock reads {self.rt.now():%H:%M})")
        actor, _ = acting()
        # Field time: when the agency sent it; the agency is who the caller relays.
        cause = Cause(actor=actor, via=incoming.sender[:128], occurred_at=incoming.sent,
                      reason=f"CAP alert from {incoming.sender}"[:1000])
        return await self.rt.command(
            lambda app: self._imported(app, incoming, resolution, cause),
            lambda answer: answer)

    def _imported(self, app: MonitorApp, incoming: decode.Incoming, resolution: int,
                  cause: Cause) -> tuple[pb.ImportCapAlertResponse, list[Recording]]:
        answer, changed = intake.import_alert(app, incoming, resolution, cause, self.rt.now())
        return answer, app.record(*changed)

    async def ListCapAlerts(self, request: pb.ListCapAlertsRequest, context: Ctx
                            ) -> pb.ListCapAlertsResponse:
        check_enum("status", pb.CapAlertStatus, request.status, optional=True)
        status = pb.CapAlertStatus.Name(request.status) if request.status else ""
        alerts, token = await self.rt.views.page(
            "cap_alert", pb.ImportedCapAlert, page_size=request.page.page_size,
            page_token=request.page.page_token, status=status)
        return pb.ListCapAlertsResponse(alerts=alerts, next_page_token=token)

    async def PlaceCapAlert(self, request: pb.PlaceCapAlertRequest, context: Ctx
                            ) -> pb.PlaceCapAlertResponse:
        required(request, "sender")
        required(request, "identifier")
        cause = cause_of(self.rt.clock, reason="placed by hand")
        sender, identifier = request.sender, request.identifier
        districts, cells = list(request.districts), list(request.grid_cells)
        resolution = self.app.grid_resolution

        def placed(app: MonitorApp) -> tuple[pb.PlaceCapAlertResponse, list[Recording]]:
            answer, changed = intake.place(app, sender, identifier, districts, cells,
                                           resolution, cause, self.rt.now())
            return answer, app.record(*changed)

        return await self.rt.command(placed, lambda answer: answer)

    async def DismissCapAlert(self, request: pb.DismissCapAlertRequest, context: Ctx
                              ) -> pb.DismissCapAlertResponse:
        required(request, "sender")
        required(request, "identifier")
        cause = cause_of(self.rt.clock, reason=request.reason[:1000])
        sender, identifier, reason = request.sender, request.identifier, request.reason

        def dismissed(app: MonitorApp) -> tuple[pb.DismissCapAlertResponse, list[Recording]]:
            answer, changed = intake.dismiss(app, sender, identifier, reason, cause,
                                             self.rt.now())
            return answer, app.record(*changed)

        return await self.rt.command(dismissed, lambda answer: answer)
