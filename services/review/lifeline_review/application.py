"""Review's use cases: keep histories, replay them, evaluate them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Recording
from lifeline.encoding import StoredRows, replay_rows
from lifeline.errors import AlreadyExists, InvalidArgument
from lifeline.events import Cause, ProtoAggregate, from_timestamp, meta_of, stable_id
from lifeline.incident.aggregate import parse_incident_id
from lifeline.incident.phases import OPEN, state_name
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.plans import PlanLibrary, default_library
from lifeline.review.v1 import review_pb2 as pb
from lifeline.store import ServiceApplication, Taking
from lifeline.validation import quote
from lifeline.views import ViewRow
from psycopg import sql
from psycopg.rows import args_row

from lifeline_review.domain import (
    IncidentHistory,
    PlanRevision,
    as_of,
    evaluate,
    validate_history,
)
from lifeline_review.measures import Case, IncidentFilter

#: Histories read per query when replaying many.
REPLAY_CHUNK = 200


class ReviewApp(ServiceApplication):
    name = "review"

    def keep(self, event: incident_pb2.IncidentEvent, now: datetime,
             taking: Taking | None) -> list[Recording]:
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
        return self.record(history, taking=taking)

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

    def stored_histories(self, incident_ids: Iterable[str]) -> Iterator[list[StoredRows]]:
        """The stored rows of many histories, a few hundred histories per query, each
        history's rows as columns (one result row per history, in binary: a result row per
        event cost more to fetch than to decode), in order of history."""
        recorder: Any = self.process_recorder
        statement = sql.SQL(
            "SELECT originator_id, array_agg(originator_version ORDER BY originator_version), "
            "array_agg(topic ORDER BY originator_version), "
            "array_agg(state ORDER BY originator_version) FROM {} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id ORDER BY originator_id"
        ).format(sql.Identifier(recorder.datastore.schema, recorder.events_table_name))
        ids = [UUID(i) for i in incident_ids]
        for start in range(0, len(ids), REPLAY_CHUNK):
            with recorder.datastore.get_connection() as conn, \
                    conn.cursor(row_factory=args_row(StoredRows), binary=True) as cursor:
                cursor.execute(statement, (ids[start:start + REPLAY_CHUNK],))
                yield cursor.fetchall()

    def replay_many(self, incident_ids: Iterable[str]) -> Iterator[IncidentHistory]:
        """Many histories straight from the store, decoded and folded as the repository
        would, without its round trip per history, cache and copies (a question across
        incidents reads every history once)."""
        for histories in self.stored_histories(incident_ids):
            for rows in histories:
                history = replay_rows(self.mapper, rows)
                if isinstance(history, IncidentHistory):
                    yield history

    def cases(self, incident_ids: Iterable[str], only: IncidentFilter) -> Iterator[Case]:
        """Each history the filter admits, measured."""
        for history in self.replay_many(incident_ids):
            if only.admits(history.state, history.imported is not None):
                yield Case(evaluate(str(history.id), history.events, history.state),
                           history.state)

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
            if not only.admits(history.state, history.imported is not None):
                continue
            state, _ = as_of(history.events, when)
            if state is None or state.state not in OPEN:
                continue
            active.append(state.view)
            committed.extend(pb.CommittedUnit(
                unit_id=u.unit_id, unit_kind=u.unit_kind, incident_id=str(history.id),
                status=u.status) for u in state.deployed_units())
        return active, committed

    def propose_revision(self, plan_id: str, plan_toml: bytes, incident_ids: list[str],
                         findings: list[pb.Finding], cause: Cause, now: datetime
                         ) -> tuple[PlanRevision, list[Recording]]:
        for index, incident_id in enumerate(incident_ids):
            try:
                known = self.find(IncidentHistory, UUID(incident_id))
            except ValueError:
                known = None
            if known is None:
                raise InvalidArgument(f"incident_ids[{index}]",
                                      f"no history {quote(incident_id)} to cite")
        revision = PlanRevision.propose(plan_id, plan_toml, self.plans.get(plan_id),
                                        incident_ids, findings, cause, now)
        if self.find(PlanRevision, revision.id) is not None:
            raise AlreadyExists("plan revision", str(revision.id))
        return revision, self.record(revision)

    def decide_revision(self, revision_id: str, accept: bool, cause: Cause, now: datetime
                        ) -> tuple[PlanRevision, list[Recording]]:
        revision = self.revision(revision_id)
        revision.decide(accept, cause, now)
        return revision, self.record(revision)

    def revision(self, revision_id: str) -> PlanRevision:
        try:
            key = UUID(revision_id)
        except ValueError:
            raise InvalidArgument("revision_id", f"{quote(revision_id)} is not a revision id "
                                                 "(a UUID)") from None
        return self.load(PlanRevision, key, "plan revision", revision_id)

    @property
    def plans(self) -> PlanLibrary:
        """The plans in force, as dispatch loads them (LIFELINE_PLANS or the shipped)."""
        return default_library()

    def chained_history(self, incident_id: str) -> list[incident_pb2.IncidentEvent]:
        history = self.load(IncidentHistory, parse_incident_id(incident_id), "incident history",
                            incident_id)
        return history.chained_events()


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, PlanRevision):
        return [ViewRow("plan_revision", str(aggregate.id), aggregate.view,
                        status=pb.PlanRevisionStatus.Name(aggregate.view.status),
                        category=aggregate.view.plan_id)]
    if isinstance(aggregate, IncidentHistory):
        key = str(aggregate.id)
        state = aggregate.state.state
        return [ViewRow("history", key, pb.HistorySummary(
            incident_id=key, events=len(aggregate.events), state=state,
            imported=aggregate.imported, chain_head=aggregate.chain()[-1]),
            status=state_name(state))]
    return []
