"""Review's use cases: keep histories, replay them, evaluate them."""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Recording, Tracking
from lifeline.errors import AlreadyExists
from lifeline.events import Cause, ProtoAggregate, from_timestamp, meta_of, stable_id
from lifeline.incident.model import parse_incident_id, state_name
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow

from lifeline_review.domain import IncidentHistory


class ReviewApp(ServiceApplication):
    name = "review"

    def keep(self, event: incident_pb2.IncidentEvent, now: datetime,
             tracking: Tracking | None) -> list[Recording]:
        meta = meta_of(event)
        cause = Cause(actor="review", occurred_at=from_timestamp(meta.occurred_at),
                      correlation_id=meta.correlation_id,
                      causation_id=f"{meta.aggregate_id}/{meta.sequence}")
        history = self.find(IncidentHistory, UUID(meta.aggregate_id))
        if history is not None and history.imported is not None:
            raise ValueError(f"history {meta.aggregate_id} was imported; a live event with "
                             "its id cannot be kept")
        if history is None:
            history = IncidentHistory.begin(event, cause, now)
        else:
            history.append(event, cause, now)
        return self.record(history, tracking=tracking)

    def import_history(self, events: list[incident_pb2.IncidentEvent], cause: Cause,
                       now: datetime) -> tuple[IncidentHistory, list[Recording]]:
        digest = hashlib.sha256()
        for event in events:
            digest.update(event.SerializeToString(deterministic=True))
        # Derived from the content: a live incident's id never, the same file always.
        history_id = stable_id("imported-history", digest.hexdigest())
        if self.find(IncidentHistory, history_id) is not None:
            raise AlreadyExists("imported history", str(history_id))
        history = IncidentHistory.import_(history_id, events, digest.hexdigest(), cause, now)
        return history, self.record(history)

    def history(self, incident_id: str) -> list[incident_pb2.IncidentEvent]:
        history = self.load(IncidentHistory, parse_incident_id(incident_id), "incident history",
                            incident_id)
        return list(history.events)


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, IncidentHistory):
        key = str(aggregate.id)
        state = aggregate.state.view.state
        return [ViewRow("history", key, pb.HistorySummary(
            incident_id=key, events=len(aggregate.events), state=state,
            imported=aggregate.imported), status=state_name(state))]
    return []
