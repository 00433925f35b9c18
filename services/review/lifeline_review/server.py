"""Review's gRPC face."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from lifeline.edge import cause_of
from lifeline.incident.model import IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_review.application import ReviewApp
from lifeline_review.domain import IncidentHistory, evaluate

Ctx = grpc.aio.ServicerContext


def _imported(history: IncidentHistory) -> pb.ImportHistoryResponse:
    origin = history.imported or pb.HistoryImported()
    return pb.ImportHistoryResponse(
        incident_id=str(history.id), events=len(history.events), state=history.state.view,
        original_incident_id=origin.original_incident_id, digest=origin.digest)


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    def __init__(self, runtime: Runtime, app: ReviewApp) -> None:
        self.rt, self.app = runtime, app

    async def _history(self, incident_id: str) -> list[incident_pb2.IncidentEvent]:
        return await self.rt.read(lambda: self.app.history(incident_id))

    async def GetIncidentHistory(self, request: pb.GetIncidentHistoryRequest, context: Ctx
                                 ) -> AsyncIterator[incident_pb2.IncidentEvent]:
        for event in await self._history(request.incident_id):
            yield event

    async def ReplayIncident(self, request: pb.ReplayIncidentRequest, context: Ctx
                             ) -> AsyncIterator[pb.ReplayStep]:
        # The same fold dispatch used when it recorded these events.
        state = IncidentState()
        for event in await self._history(request.incident_id):
            state.apply(event)
            yield pb.ReplayStep(event=event, state=state.view)

    async def EvaluateIncident(self, request: pb.EvaluateIncidentRequest, context: Ctx
                               ) -> pb.EvaluateIncidentResponse:
        history = await self._history(request.incident_id)
        return pb.EvaluateIncidentResponse(evaluation=evaluate(request.incident_id, history))

    async def ImportHistory(self, request: pb.ImportHistoryRequest, context: Ctx
                            ) -> pb.ImportHistoryResponse:
        cause = cause_of(self.rt.clock, reason="imported")
        return await self.rt.command(
            lambda: self.app.import_history(list(request.events), cause, self.rt.now()),
            _imported)

    async def ListHistories(self, request: pb.ListHistoriesRequest, context: Ctx
                            ) -> pb.ListHistoriesResponse:
        histories, token = await self.rt.views.page(
            "history", pb.HistorySummary, page_size=request.page.page_size,
            page_token=request.page.page_token)
        return pb.ListHistoriesResponse(histories=histories, next_page_token=token)
