"""Review's gRPC face."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from google.protobuf.message import Message
from lifeline.edge import cause_of, time_field
from lifeline.errors import InvalidArgument
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc
from lifeline.runtime import Runtime
from lifeline.views import MAX_PAGE

from lifeline_review import chain
from lifeline_review.application import ReviewApp
from lifeline_review.domain import IncidentHistory, evaluate
from lifeline_review.measures import IncidentFilter, summarize

Ctx = grpc.aio.ServicerContext


def _imported(history: IncidentHistory, chain_verified: bool) -> pb.ImportHistoryResponse:
    origin = history.imported or pb.HistoryImported()
    return pb.ImportHistoryResponse(
        incident_id=str(history.id), events=len(history.events), state=history.state.view,
        original_incident_id=origin.original_incident_id, digest=origin.digest,
        chain_verified=chain_verified, chain_head=history.chain()[-1])


def _required_time(request: Message, name: str) -> datetime:
    when = time_field(request, name)
    if when is None:
        raise InvalidArgument(name, "is required (a field time)")
    return when


def incident_filter(f: pb.IncidentFilter) -> IncidentFilter:
    """The request's filter as plain values."""
    opened_from = time_field(f, "opened_from", field="filter.opened_from")
    opened_before = time_field(f, "opened_before", field="filter.opened_before")
    if opened_from is not None and opened_before is not None and opened_before <= opened_from:
        raise InvalidArgument("filter.opened_before", "must be after filter.opened_from")
    return IncidentFilter(
        opened_from=opened_from, opened_before=opened_before,
        categories=frozenset(f.categories), hazards=frozenset(f.hazards),
        grades=frozenset(f.grades), grid_cells=frozenset(f.grid_cells),
        plan_ids=frozenset(f.plan_ids), origin=f.origin)


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    def __init__(self, runtime: Runtime[ReviewApp], app: ReviewApp) -> None:
        self.rt, self.app = runtime, app

    async def _history(self, incident_id: str) -> list[incident_pb2.IncidentEvent]:
        return await self.rt.read(lambda: self.app.history(incident_id))

    async def GetIncidentHistory(self, request: pb.GetIncidentHistoryRequest, context: Ctx
                                 ) -> AsyncIterator[incident_pb2.IncidentEvent]:
        # Each event carries its chain digest, so an exported file is tamper-evident.
        for event in await self.rt.read(lambda: self.app.chained_history(request.incident_id)):
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
        events = list(request.events)
        verified = chain.is_chained(events)  # whether it held is checked on import
        return await self.rt.command(
            lambda app: app.import_history(events, cause, self.rt.now()),
            lambda history: _imported(history, verified))

    async def _history_ids(self) -> list[str]:
        ids: list[str] = []
        token = ""
        while True:
            page, token = await self.rt.views.page("history", pb.HistorySummary,
                                                   page_size=MAX_PAGE, page_token=token)
            ids.extend(h.incident_id for h in page)
            if not token:
                return ids

    async def EvaluateIncidents(self, request: pb.EvaluateIncidentsRequest, context: Ctx
                                ) -> pb.EvaluateIncidentsResponse:
        only = incident_filter(request.filter)
        ids = await self._history_ids()
        evaluation = await self.rt.read(lambda: summarize(
            self.app.cases(ids, only), request.include_incidents))
        return pb.EvaluateIncidentsResponse(evaluation=evaluation)

    async def GetIncidentAsOf(self, request: pb.GetIncidentAsOfRequest, context: Ctx
                              ) -> pb.GetIncidentAsOfResponse:
        when = _required_time(request, "as_of")
        state, happened, total = await self.rt.read(
            lambda: self.app.incident_as_of(request.incident_id, when))
        answer = pb.GetIncidentAsOfResponse(events=happened, events_total=total)
        if state is not None:
            answer.state.CopyFrom(state.view)
        return answer

    async def GetCityAsOf(self, request: pb.GetCityAsOfRequest, context: Ctx
                          ) -> pb.GetCityAsOfResponse:
        when = _required_time(request, "as_of")
        ids = await self._history_ids()
        active, committed = await self.rt.read(
            lambda: self.app.city_as_of(ids, when, request.origin))
        return pb.GetCityAsOfResponse(active_incidents=active, committed_units=committed)

    async def ProposePlanRevision(self, request: pb.ProposePlanRevisionRequest, context: Ctx
                                  ) -> pb.PlanRevision:
        cause = cause_of(self.rt.clock, reason=request.reason)
        return await self.rt.command(lambda app: app.propose_revision(
            request.plan_id, request.plan_toml, list(request.incident_ids),
            list(request.findings), cause, self.rt.now()), lambda r: r.view)

    async def DecidePlanRevision(self, request: pb.DecidePlanRevisionRequest, context: Ctx
                                 ) -> pb.PlanRevision:
        cause = cause_of(self.rt.clock, reason=request.reason)
        return await self.rt.command(lambda app: app.decide_revision(
            request.revision_id, request.accept, cause, self.rt.now()), lambda r: r.view)

    async def GetPlanRevision(self, request: pb.GetPlanRevisionRequest, context: Ctx
                              ) -> pb.PlanRevision:
        revision = await self.rt.read(lambda: self.app.revision(request.revision_id))
        return revision.view

    async def ListPlanRevisions(self, request: pb.ListPlanRevisionsRequest, context: Ctx
                                ) -> pb.ListPlanRevisionsResponse:
        revisions, token = await self.rt.views.page(
            "plan_revision", pb.PlanRevision, page_size=request.page.page_size,
            page_token=request.page.page_token, category=request.plan_id)
        return pb.ListPlanRevisionsResponse(revisions=revisions, next_page_token=token)

    async def ListHistories(self, request: pb.ListHistoriesRequest, context: Ctx
                            ) -> pb.ListHistoriesResponse:
        histories, token = await self.rt.views.page(
            "history", pb.HistorySummary, page_size=request.page.page_size,
            page_token=request.page.page_token)
        return pb.ListHistoriesResponse(histories=histories, next_page_token=token)
