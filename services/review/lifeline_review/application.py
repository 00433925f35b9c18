"""Review's use cases: keep histories, replay them, evaluate them."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Recording, StoredEvent, Tracking
from lifeline.errors import AlreadyExists
from lifeline.events import Cause, ProtoAggregate, fold, from_timestamp, meta_of, stable_id
from lifeline.incident.model import OPEN, IncidentState, parse_incident_id, state_name
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow
from psycopg import sql

from lifeline_review.domain import IncidentHistory, as_of, evaluate, validate_history
from lifeline_review.measures import Case, IncidentFilter

#: Histories read per query when replaying many.
REPLAY_CHUNK = 200


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
        events = validate_history(events)
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

    def stored_rows(self, incident_ids: Iterable[str]) -> Iterator[list[Any]]:
        """The stored rows of many histories, a few hundred histories per query, in
        order of history and version."""
        recorder: Any = self.process_recorder
        statement = sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(sql.Identifier(recorder.datastore.schema, recorder.events_table_name))
        ids = [UUID(i) for i in incident_ids]
        for start in range(0, len(ids), REPLAY_CHUNK):
            with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
                cursor.execute(statement, (ids[start:start + REPLAY_CHUNK],))
                yield cursor.fetchall()

    def replay_many(self, incident_ids: Iterable[str]) -> Iterator[IncidentHistory]:
        """Many histories straight from the store, decoded and folded as the repository
        would, without its round trip per history, cache and copies (a question across
        incidents reads every history once)."""
        to_event = self.mapper.to_domain_event
        for rows in self.stored_rows(incident_ids):
            for _, group in itertools.groupby(rows, key=lambda row: row["originator_id"]):
                history = fold(None, [to_event(StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"], state=bytes(row["state"]))) for row in group])
                if isinstance(history, IncidentHistory):
                    yield history

    def cases(self, incident_ids: Iterable[str], only: IncidentFilter) -> Iterator[Case]:
        """Each history the filter admits, measured."""
        for history in self.replay_many(incident_ids):
            if only.admits(history.state.view, history.imported is not None):
                yield Case(evaluate(str(history.id), history.events, history.state),
                           history.state.view)

    def incident_as_of(self, incident_id: str, when: datetime
                       ) -> tuple[IncidentState | None, int, int]:
        history = self.load(IncidentHistory, parse_incident_id(incident_id), "incident history",
                            incident_id)
        state, happened = as_of(history.events, when)
        return state, happened, len(history.events)

    def city_as_of(self, incident_ids: Iterable[str], when: datetime, origin: int
                   ) -> tuple[list[incident_pb2.Incident], list[pb.CommittedUnit]]:
        """Incidents open at field time `when` (live ones unless asked otherwise) and the
        units committed to them."""
        only = IncidentFilter(opened_before=when + timedelta(microseconds=1),
                              origin=origin or pb.HISTORY_ORIGIN_LIVE)
        active: list[incident_pb2.Incident] = []
        committed: list[pb.CommittedUnit] = []
        for history in self.replay_many(incident_ids):
            if not only.admits(history.state.view, history.imported is not None):
                continue
            state, _ = as_of(history.events, when)
            if state is None or state.view.state not in OPEN:
                continue
            active.append(state.view)
            committed.extend(pb.CommittedUnit(
                unit_id=u.unit_id, unit_kind=u.unit_kind, incident_id=str(history.id),
                status=u.status) for u in state.deployed_units())
        return active, committed

    def chained_history(self, incident_id: str) -> list[incident_pb2.IncidentEvent]:
        history = self.load(IncidentHistory, parse_incident_id(incident_id), "incident history",
                            incident_id)
        return history.chained_events()


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, IncidentHistory):
        key = str(aggregate.id)
        state = aggregate.state.view.state
        return [ViewRow("history", key, pb.HistorySummary(
            incident_id=key, events=len(aggregate.events), state=state,
            imported=aggregate.imported, chain_head=aggregate.chain()[-1]),
            status=state_name(state))]
    return []
