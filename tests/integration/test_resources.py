"""Resources' choice of units against a real PostgreSQL, when its read model lags."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import Tracking
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause
from lifeline.incident.v1 import incident_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline_resources.application import MoreCandidates, ResourcesApp
from lifeline_resources.domain import ResourceRequest, request_id_of

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
CAUSE = Cause("dispatch", NOW)


def request(request_id: str, count: int) -> incident_pb2.ResourcesRequested:
    return incident_pb2.ResourcesRequested(
        meta=common_pb2.EventMeta(aggregate_id=f"incident-{request_id}"),
        request_id=request_id, location=common_pb2.GeoPoint(lat=31.2, lon=121.4),
        requirements=[incident_pb2.UnitRequirement(unit_kind="ambulance", count=count)])


def test_nearest_few_that_are_all_taken_ask_for_every_candidate_not_a_shortfall(
        database_url: str) -> None:
    app = ResourcesApp(database_url)
    try:
        for n in range(6):
            app.register_unit(resources_pb2.RegisterUnitRequest(
                id=f"A-{n}", kind="ambulance", department="medical",
                home=common_pb2.GeoPoint(lat=31.2 + n * 0.01, lon=121.4)), CAUSE, NOW)
        everyone = [(f"A-{n}", float(n)) for n in range(6)]
        app.answer_request(request("first", 4), {"ambulance": everyone}, CAUSE, NOW,
                           Tracking("dispatch/first", 1))
        # The view still shows the four nearest available: they are the few fetched.
        stale = {"ambulance": everyone[:4]}
        with pytest.raises(MoreCandidates):
            app.answer_request(request("second", 2), stale, CAUSE, NOW,
                               Tracking("dispatch/second", 1), frozenset({"ambulance"}))
        assert app.find(ResourceRequest, request_id_of("second")) is None  # nothing written
        app.answer_request(request("second", 2), {"ambulance": everyone}, CAUSE, NOW,
                           Tracking("dispatch/second", 1))
        answer = app.find(ResourceRequest, request_id_of("second"))
        assert answer is not None
        assert [a.unit_id for a in answer.answer.assignments] == ["A-4", "A-5"]
        assert not answer.answer.shortfalls
    finally:
        app.close()
