"""Commands in bulk against a real PostgreSQL: a fleet registered and a call queue reported
in one write each, all or nothing, a refused item named by its index, and a fleet's units
already registered left as they are."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from lifeline.common.v1 import common_pb2
from lifeline.dispatch.v1 import dispatch_pb2
from lifeline.errors import InvalidArgument
from lifeline.events import Cause
from lifeline.resources.v1 import resources_pb2
from lifeline_dispatch.application import MAX_REPORTS_PER_CALL, DispatchApp
from lifeline_resources.application import MAX_UNITS_PER_CALL, ResourcesApp
from lifeline_resources.domain import Unit, unit_id_of

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
HOME = common_pb2.GeoPoint(lat=31.2, lon=121.4)


def unit(unit_id: str, **fields: Any) -> resources_pb2.RegisterUnitRequest:
    given: dict[str, Any] = {"kind": "ambulance", "department": "medical", "home": HOME}
    return resources_pb2.RegisterUnitRequest(id=unit_id, **{**given, **fields})


def report(description: str, **fields: Any) -> dispatch_pb2.ReportIncidentRequest:
    given: dict[str, Any] = {"hazard": "gas_leak", "location": HOME}
    return dispatch_pb2.ReportIncidentRequest(description=description, **{**given, **fields})


@pytest.fixture
def resources(database_url: str) -> Iterator[ResourcesApp]:
    app = ResourcesApp(database_url)
    yield app
    app.close()


@pytest.fixture
def dispatch(database_url: str) -> Iterator[DispatchApp]:
    app = DispatchApp(database_url)
    yield app
    app.close()


def test_a_fleet_is_registered_in_one_write(resources: ResourcesApp) -> None:
    fleet = [unit(f"A-{n}") for n in range(50)]
    answer, recordings = resources.register_units(fleet, Cause("admin", NOW), NOW)
    assert answer.registered == 50 and not answer.existing
    assert len(recordings) == 50
    found = resources.find_many([unit_id_of(f"A-{n}") for n in range(50)])
    assert all(isinstance(found[unit_id_of(f"A-{n}")], Unit) for n in range(50))
    # The fleet index knows them at once: the next choice sees the whole fleet.
    known = resources.fleet.get("A-49")
    assert known is not None and known.available


def test_units_already_registered_are_left_as_they_are_and_named(
        resources: ResourcesApp) -> None:
    resources.register_unit(unit("A-1", kind="fire_engine", department="fire"),
                            Cause("admin", NOW), NOW)
    answer, _ = resources.register_units([unit("A-1"), unit("A-2"), unit("A-2")],
                                         Cause("admin", NOW), NOW)
    assert answer.registered == 1
    assert list(answer.existing) == ["A-1", "A-2"]
    assert resources.get_unit("A-1").view.kind == "fire_engine"
    again, recordings = resources.register_units([unit("A-1"), unit("A-2")],
                                                 Cause("admin", NOW), NOW)
    assert again.registered == 0 and list(again.existing) == ["A-1", "A-2"]
    assert recordings == []


@pytest.mark.parametrize(("bad", "message"), [
    (unit("B-2", kind=""), "units[2].kind: is required"),
    (resources_pb2.RegisterUnitRequest(id="B-2", kind="ambulance", department="medical"),
     "units[2].home: is required"),
    (unit("B-2", crew_size=1000), "units[2].crew_size: at most 100"),
])
def test_one_refused_unit_refuses_the_call_by_its_index_and_writes_nothing(
        resources: ResourcesApp, bad: resources_pb2.RegisterUnitRequest, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        resources.register_units([unit("B-0"), unit("B-1"), bad, unit("B-3")],
                                 Cause("admin", NOW), NOW)
    assert str(refused.value) == message
    assert resources.find_many([unit_id_of(f"B-{n}") for n in range(4)]) == {}
    assert resources.fleet.get("B-0") is None


def test_more_units_than_a_call_takes_are_refused(resources: ResourcesApp) -> None:
    with pytest.raises(InvalidArgument, match=f"units: at most {MAX_UNITS_PER_CALL}"):
        resources.register_units([unit(f"C-{n}") for n in range(MAX_UNITS_PER_CALL + 1)],
                                 Cause("admin", NOW), NOW)


def test_a_call_queue_is_reported_in_one_write_in_order(dispatch: DispatchApp) -> None:
    queue = [(report(f"call {n}"), Cause(f"caller-{n}", NOW)) for n in range(20)]
    incidents, recordings = dispatch.report_many(queue, NOW)
    assert [i.description for i in incidents] == [f"call {n}" for n in range(20)]
    assert [i.reporter for i in incidents] == [f"caller-{n}" for n in range(20)]
    assert len({i.id for i in incidents}) == 20
    assert len(recordings) == 20
    stored = dispatch.incident(incidents[7].id)
    assert stored.view.description == "call 7"


@pytest.mark.parametrize(("bad", "message"), [
    (report("bad", hazard=" "), "reports[1].hazard: is required"),
    (dispatch_pb2.ReportIncidentRequest(hazard="gas_leak", description="bad"),
     "reports[1].location: is required"),
    (report("bad", location=common_pb2.GeoPoint(lat=91, lon=0)),
     "reports[1].location: latitude must be within -90..90 and longitude -180..180"),
])
def test_one_refused_report_refuses_the_queue_by_its_index_and_writes_nothing(
        dispatch: DispatchApp, bad: dispatch_pb2.ReportIncidentRequest, message: str) -> None:
    before = dispatch.recorder.max_notification_id()
    with pytest.raises(InvalidArgument) as refused:
        dispatch.report_many([(report("fine"), Cause("caller", NOW)),
                              (bad, Cause("caller", NOW))], NOW)
    assert str(refused.value) == message
    assert dispatch.recorder.max_notification_id() == before


def test_a_longer_queue_than_a_call_takes_is_refused(dispatch: DispatchApp) -> None:
    queue = [(report(f"call {n}"), Cause("caller", NOW))
             for n in range(MAX_REPORTS_PER_CALL + 1)]
    with pytest.raises(InvalidArgument, match=f"reports: at most {MAX_REPORTS_PER_CALL}"):
        dispatch.report_many(queue, NOW)

