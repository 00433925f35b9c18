"""Events are stored as binary protobuf; a store written before that, with canonical JSON
rows, still loads, and both kinds of rows can sit in one aggregate's history."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Mapper, StoredEvent
from google.protobuf.message import Message
from lifeline import cli as lifeline_cli
from lifeline.encoding import ProtoMapper, reencode_json_rows
from lifeline.events import Cause, meta_of, to_json
from lifeline_review.application import ReviewApp
from lifeline_review.demand import DemandSpec, generate
from lifeline_review.domain import evaluate
from psycopg import sql

pytestmark = pytest.mark.integration
NOW = datetime(2026, 7, 21, 8, 0, tzinfo=UTC)
CAUSE = Cause(actor="test", occurred_at=NOW)


class JsonRowsMapper(Mapper[UUID]):
    """Writes rows as the previous version did: the payload as canonical JSON."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if isinstance(getattr(domain_event, "payload", None), Message):
            domain_event = copy.copy(domain_event)
            object.__setattr__(domain_event, "payload", to_json(domain_event.payload))
        return super().to_stored_event(domain_event)


JSON_ROWS = {"MAPPER_TOPIC": f"{__name__}:JsonRowsMapper"}


def stored_states(app: ReviewApp) -> list[bytes]:
    recorder: Any = app.process_recorder
    table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(sql.SQL("SELECT state FROM {} ORDER BY notification_id").format(table))
        return [bytes(row["state"]) for row in cursor.fetchall()]


def test_rows_written_as_json_load_beside_binary_ones(database_url: str) -> None:
    first, later = generate(DemandSpec(incidents=2, seed=11, false_alarms=0))
    incident_id = meta_of(first[0]).aggregate_id
    old = ReviewApp(database_url, JSON_ROWS)
    try:
        for event in first[:10]:
            old.keep(event, NOW, None)
        assert all(state.startswith(b"{") for state in stored_states(old))
    finally:
        old.close()

    app = ReviewApp(database_url)
    try:
        assert isinstance(app.mapper, ProtoMapper)
        for event in first[10:]:  # the same history goes on, now in binary
            app.keep(event, NOW, None)
        imported, _ = app.import_history(later, CAUSE, NOW)
        states = stored_states(app)
        assert sum(s.startswith(b"{") for s in states) == 10
        assert len(states) == len(first) + 1 + len(later)
    finally:
        app.close()

    fresh = ReviewApp(database_url)  # nothing cached: every row read back
    try:
        history = fresh.history(incident_id)
        assert history == first
        assert evaluate("x", history) == evaluate("x", first)
        assert fresh.history(str(imported.id)) == later
    finally:
        fresh.close()


def test_a_json_store_is_rewritten_binary_and_replays_the_same(database_url: str) -> None:
    first, later = generate(DemandSpec(incidents=2, seed=12, false_alarms=0))
    old = ReviewApp(database_url, JSON_ROWS)
    try:
        for event in first:
            old.keep(event, NOW, None)
        imported, _ = old.import_history(later, CAUSE, NOW)
        before = len(stored_states(old))
        assert all(state.startswith(b"{") for state in stored_states(old))
    finally:
        old.close()

    app = ReviewApp(database_url)
    try:
        rewritten = reencode_json_rows(app, batch=7)  # several batches
        states = stored_states(app)
        assert rewritten == len(first) + 1 + len(later) == before
        assert not any(state.startswith(b"{") for state in states)
        assert reencode_json_rows(app) == 0  # nothing left to do
    finally:
        app.close()

    fresh = ReviewApp(database_url)
    try:
        assert fresh.history(meta_of(first[0]).aggregate_id) == first
        assert fresh.history(str(imported.id)) == later
    finally:
        fresh.close()


def test_lifeline_migrate_events_rewrites_every_service_store(
        database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    history = generate(DemandSpec(incidents=1, seed=13, false_alarms=0))[0]
    old = ReviewApp(database_url, JSON_ROWS)
    try:
        for event in history:
            old.keep(event, NOW, None)
    finally:
        old.close()
    lifeline_cli.main(["migrate-events", "--database-url", database_url])
    out = capsys.readouterr().out
    assert f"review: {len(history)} events rewritten in binary" in out
    assert "dispatch: 0 events" in out
    app = ReviewApp(database_url)
    try:
        assert not any(s.startswith(b"{") for s in stored_states(app))
        assert app.history(meta_of(history[0]).aggregate_id) == history
    finally:
        app.close()
