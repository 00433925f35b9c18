"""Resources' choice of units against a real PostgreSQL, when its fleet index lags."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from eventsourcing.persistence import Tracking
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause
from lifeline.incident.v1 import incident_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline.store import Taking
from lifeline_resources.application import ResourcesApp
from lifeline_resources.domain import ResourceRequest, request_id_of

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
CAUSE = Cause("dispatch", NOW)


def request(request_id: str, count: int) -> incident_pb2.ResourcesRequested:
    return incident_pb2.ResourcesRequested(
        meta=common_pb2.EventMeta(aggregate_id=f"incident-{request_id}"),
        request_id=request_id, location=common_pb2.GeoPoint(lat=31.2, lon=121.4),
        requirements=[incident_pb2.UnitRequirement(unit_kind="ambulance", count=count)])


def answer(app: ResourcesApp, request_id: str) -> resources_pb2.RequestAnswered:
    found = app.find(ResourceRequest, request_id_of(request_id))
    assert found is not None
    return found.answer


def test_units_the_index_still_shows_free_are_passed_over_not_counted_short(
        database_url: str) -> None:
    app = ResourcesApp(database_url)
    try:
        for n in range(6):
            app.register_unit(resources_pb2.RegisterUnitRequest(
                id=f"A-{n}", kind="ambulance", department="medical",
                home=common_pb2.GeoPoint(lat=31.2 + n * 0.01, lon=121.4)), CAUSE, NOW)
        app.answer_request(request("first", 4), CAUSE, NOW, Taking(Tracking("dispatch/first", 1)))
        assert [a.unit_id for a in answer(app, "first").assignments] == [
            "A-0", "A-1", "A-2", "A-3"]
        # The index lags: it still shows the four nearest as available.
        for n in range(4):
            known = app.fleet.get(f"A-{n}")
            assert known is not None and not known.available
            app.fleet.upsert(replace(known, available=True, status="AVAILABLE", version=0))
        app.answer_request(request("second", 2), CAUSE, NOW, Taking(Tracking("dispatch/second", 1)))
        second = answer(app, "second")
        assert [a.unit_id for a in second.assignments] == ["A-4", "A-5"]
        assert not second.shortfalls
        passed = {p.unit_id: p.reason for p in second.assignments[0].passed_over}
        assert passed["A-0"] == "assigned (taken meanwhile)"
    finally:
        app.close()
