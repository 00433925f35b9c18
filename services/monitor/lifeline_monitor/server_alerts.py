"""Monitor's gRPC face for what reaches people: parties' inboxes and escalation chains.
Part of `MonitorServicer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import grpc
from lifeline.edge import check_name, required
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.runtime import Runtime

from lifeline_monitor import alarms, inbox
from lifeline_monitor.application import MonitorApp

Ctx = grpc.aio.ServicerContext


class AlertingServicer:
    rt: Runtime
    app: MonitorApp
    #: Now on the field clock escalation steps fall due on (set by bootstrap).
    field_now: Callable[[], datetime | None]

    def _field_now(self) -> datetime | None:
        found = getattr(self, "field_now", None)
        return found() if found is not None else self.rt.now()

    async def ListInbox(self, request: pb.ListInboxRequest, context: Ctx
                        ) -> pb.ListInboxResponse:
        required(request, "party")
        check_name("party", request.party)
        found = await inbox.notifications(self.rt.views, request.party, request.include_done)
        return inbox.ordered(found, self._field_now())

    async def FollowInbox(self, request: pb.FollowInboxRequest, context: Ctx
                          ) -> AsyncIterator[pb.PartyNotification]:
        required(request, "party")
        check_name("party", request.party)
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
