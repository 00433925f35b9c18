"""Monitor's gRPC face for duty rosters: who holds each post, loading posts and shifts,
swaps and covers. Part of `MonitorServicer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import grpc
from lifeline.edge import cause_of, required
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.runtime import Runtime

from lifeline_monitor import rosters
from lifeline_monitor.application import MonitorApp

Ctx = grpc.aio.ServicerContext


class RosterServicer:
    rt: Runtime[MonitorApp]
    app: MonitorApp
    _field_now: Callable[[], datetime | None]

    def _at(self, request: pb.GetRosterRequest | pb.SwapDutyRequest) -> datetime:
        """The request's time, else now on the field clock."""
        if request.HasField("at"):
            return rosters.check_time("at", from_timestamp(request.at))
        return self._field_now() or self.rt.now()

    def _recorded(self, reason: str) -> Cause:
        """A swap or cover happens when it is recorded (field time), whenever it takes
        effect: it may be planned ahead."""
        return replace(cause_of(self.rt.clock, reason=reason),
                       occurred_at=self._field_now() or self.rt.now())

    async def _posts(self) -> list[pb.Post]:
        found: list[pb.Post] = []
        token = ""
        while True:
            page, token = await self.rt.views.page("post", pb.Post, page_size=1000,
                                                   page_token=token)
            found.extend(page)
            if not token or len(found) >= rosters.MAX_POSTS_PER_LOAD * 10:
                return found

    async def GetRoster(self, request: pb.GetRosterRequest, context: Ctx
                        ) -> pb.GetRosterResponse:
        if request.post:
            rosters.check_post("post", request.post)
            posts = [await self.rt.views.require("post", request.post, pb.Post)]
        else:
            posts = sorted(await self._posts(), key=lambda p: p.id)
        at = self._at(request)
        answer = pb.GetRosterResponse(on_duty=[rosters.on_duty(p, at) for p in posts],
                                      posts=posts)
        answer.at.FromDatetime(at)
        return answer

    async def LoadRoster(self, request: pb.LoadRosterRequest, context: Ctx
                         ) -> pb.LoadRosterResponse:
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: rosters.load_roster(app, request.posts, cause, self.rt.now()),
            lambda answer: answer)

    async def SwapDuty(self, request: pb.SwapDutyRequest, context: Ctx
                       ) -> pb.SwapDutyResponse:
        required(request, "post")
        required(request, "to")
        at = self._at(request)
        cause = self._recorded(request.reason or f"{request.to} takes over {request.post}")
        return await self.rt.command(
            lambda app: rosters.swap(app, request.post, request.to, at, cause, self.rt.now()),
            lambda on: pb.SwapDutyResponse(on_duty=on))

    async def CoverDuty(self, request: pb.CoverDutyRequest, context: Ctx
                        ) -> pb.CoverDutyResponse:
        required(request, "post")
        required(request, "by")
        for name in ("starts_at", "ends_at"):
            if not request.HasField(name):
                raise InvalidArgument(name, "is required")
        starts = rosters.check_time("starts_at", from_timestamp(request.starts_at))
        ends = rosters.check_time("ends_at", from_timestamp(request.ends_at))
        cause = self._recorded(request.reason or f"{request.by} covers {request.post}")
        return await self.rt.command(
            lambda app: rosters.cover(app, request.post, request.by, starts, ends, cause,
                                  self.rt.now()),
            lambda on: pb.CoverDutyResponse(on_duty=on))
