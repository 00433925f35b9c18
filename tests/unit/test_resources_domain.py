"""Resources' domain: a unit serves at most one incident, moves only when assigned, and is
freed only by (or for) the incident it serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, event_of, from_timestamp
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline_resources.domain import Unit, distance_km, unit_id_of

U = common_pb2.UnitStatus
AVAILABLE, ASSIGNED = U.UNIT_STATUS_AVAILABLE, U.UNIT_STATUS_ASSIGNED
EN_ROUTE, ON_SCENE = U.UNIT_STATUS_EN_ROUTE, U.UNIT_STATUS_ON_SCENE
OUT_OF_SERVICE = U.UNIT_STATUS_OUT_OF_SERVICE
HUANGPU_STATION = common_pb2.GeoPoint(lat=31.2286, lon=121.4800)
NOW = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)
FLOOD, FIRE = "incident-flood", "incident-fire"


class Depot:
    def __init__(self) -> None:
        self.clock = SimulationClock(datetime(2024, 7, 1, 0, 0, tzinfo=UTC))

    def cause(self, actor: str = "resources") -> Cause:
        return Cause(actor=actor, occurred_at=self.clock.now())

    def register(self, unit_id: str = "P-7", kind: str = "pump_truck") -> Unit:
        unit = Unit.register(pb.RegisterUnitRequest(id=unit_id, kind=kind, home=HUANGPU_STATION,
                                                    department="fire"), self.cause(), NOW)
        unit.collect_events()
        return unit

    def assign(self, unit: Unit, incident_id: str = FLOOD) -> None:
        unit.assign(incident_id, f"{incident_id}/req-1", self.cause("dispatch"), NOW)

    def status(self, unit: Unit, status: int) -> None:
        unit.change_status(status, self.cause(f"crew:{unit.view.id}"), NOW)


def recorded(unit: Unit) -> list[tuple[str, object]]:
    return [event_of(Unit.decode(e.payload)) for e in unit.collect_events()]


@pytest.fixture
def depot() -> Depot:
    return Depot()


def test_a_registered_unit_is_available_at_home(depot: Depot) -> None:
    unit = depot.register("E-12", "fire_engine")
    assert unit.id == unit_id_of("E-12")
    assert unit.available
    assert unit.view.status == AVAILABLE
    assert unit.view.home == HUANGPU_STATION
    assert unit.view.incident_id == ""


@pytest.mark.parametrize(("field", "request_"), [
    ("id", pb.RegisterUnitRequest(kind="ambulance", department="120", home=HUANGPU_STATION)),
    ("kind", pb.RegisterUnitRequest(id="A-1", department="120", home=HUANGPU_STATION)),
    ("department", pb.RegisterUnitRequest(id="A-1", kind="ambulance", department=" ",
                                          home=HUANGPU_STATION)),
    ("home", pb.RegisterUnitRequest(id="A-1", kind="ambulance", department="120")),
    ("home", pb.RegisterUnitRequest(id="A-1", kind="ambulance", department="120",
                                    home=common_pb2.GeoPoint(lat=31.2, lon=200))),
])
def test_registration_names_the_bad_field(depot: Depot, field: str,
                                          request_: pb.RegisterUnitRequest) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Unit.register(request_, depot.cause(), NOW)
    assert refused.value.field == field


# ---- one incident per unit ----


def test_an_assigned_unit_serves_that_incident(depot: Depot) -> None:
    unit = depot.register()
    depot.clock.advance(timedelta(minutes=7))
    depot.assign(unit, FLOOD)

    assert not unit.available
    assert unit.view.status == ASSIGNED
    assert unit.view.incident_id == FLOOD
    assert from_timestamp(unit.view.status_since) == datetime(2024, 7, 1, 0, 7, tzinfo=UTC)
    [(name, event)] = recorded(unit)
    assert name == "assigned"
    assert (event.incident_id, event.request_id) == (FLOOD, f"{FLOOD}/req-1")


@pytest.mark.parametrize("busy", [ASSIGNED, EN_ROUTE, ON_SCENE])
def test_a_deployed_unit_is_not_given_to_a_second_incident(depot: Depot, busy: int) -> None:
    unit = depot.register()
    depot.assign(unit, FLOOD)
    if busy != ASSIGNED:
        depot.status(unit, busy)
    unit.collect_events()

    with pytest.raises(RuleViolation) as refused:
        depot.assign(unit, FIRE)

    assert refused.value.rule == "one-incident-per-unit"
    assert FLOOD in str(refused.value)  # says which incident has it
    assert recorded(unit) == []
    assert unit.view.incident_id == FLOOD
    assert unit.view.status == busy


def test_an_out_of_service_unit_is_not_assigned(depot: Depot) -> None:
    unit = depot.register()
    depot.status(unit, OUT_OF_SERVICE)
    with pytest.raises(RuleViolation) as refused:
        depot.assign(unit, FLOOD)
    assert refused.value.rule == "one-incident-per-unit"
    assert "OUT_OF_SERVICE" in str(refused.value)
    assert unit.view.incident_id == ""


# ---- status changes ----


@pytest.mark.parametrize("target", [EN_ROUTE, ON_SCENE])
@pytest.mark.parametrize("current", [AVAILABLE, OUT_OF_SERVICE])
def test_a_unit_moves_only_for_an_incident_it_is_assigned_to(
        depot: Depot, current: int, target: int) -> None:
    unit = depot.register()
    if current != AVAILABLE:
        depot.status(unit, current)
    unit.collect_events()

    with pytest.raises(RuleViolation) as refused:
        depot.status(unit, target)

    assert refused.value.rule == "moves-only-when-assigned"
    assert unit.view.status == current
    assert recorded(unit) == []


def test_an_assigned_unit_goes_en_route_then_on_scene(depot: Depot) -> None:
    unit = depot.register()
    depot.assign(unit, FLOOD)
    depot.clock.advance(timedelta(minutes=2))
    depot.status(unit, EN_ROUTE)
    depot.clock.advance(timedelta(minutes=9))
    depot.status(unit, ON_SCENE)

    assert unit.view.status == ON_SCENE
    assert unit.view.incident_id == FLOOD
    assert from_timestamp(unit.view.status_since) == datetime(2024, 7, 1, 0, 11, tzinfo=UTC)
    events = recorded(unit)
    assert [name for name, _ in events] == ["assigned", "status_changed", "status_changed"]
    assert [e.incident_id for _, e in events[1:]] == [FLOOD, FLOOD]


@pytest.mark.parametrize("deployed", [ASSIGNED, EN_ROUTE, ON_SCENE])
def test_a_deployed_unit_cannot_go_out_of_service(depot: Depot, deployed: int) -> None:
    unit = depot.register()
    depot.assign(unit, FLOOD)
    if deployed != ASSIGNED:
        depot.status(unit, deployed)
    unit.collect_events()

    with pytest.raises(RuleViolation) as refused:
        depot.status(unit, OUT_OF_SERVICE)

    assert refused.value.rule == "release-before-out-of-service"
    assert unit.view.status == deployed
    assert recorded(unit) == []


def test_assigned_is_not_a_status_a_crew_can_report(depot: Depot) -> None:
    unit = depot.register()
    with pytest.raises(RuleViolation) as refused:
        depot.status(unit, ASSIGNED)
    assert refused.value.rule == "assigned-by-dispatch"
    assert unit.available


@pytest.mark.parametrize("deployed", [ASSIGNED, EN_ROUTE, ON_SCENE])
def test_reporting_available_while_deployed_releases_the_unit(depot: Depot,
                                                              deployed: int) -> None:
    unit = depot.register()
    depot.assign(unit, FLOOD)
    if deployed != ASSIGNED:
        depot.status(unit, deployed)
    unit.collect_events()

    depot.status(unit, AVAILABLE)

    [(name, event)] = recorded(unit)
    assert name == "released"
    assert event.incident_id == FLOOD
    assert event.unit_id == "P-7"
    assert unit.available
    assert unit.view.incident_id == ""
    depot.assign(unit, FIRE)  # free for the next incident
    assert unit.view.incident_id == FIRE


def test_out_of_service_and_back(depot: Depot) -> None:
    unit = depot.register()
    depot.status(unit, OUT_OF_SERVICE)
    assert unit.view.status == OUT_OF_SERVICE and not unit.available
    depot.status(unit, AVAILABLE)
    assert unit.available
    assert [name for name, _ in recorded(unit)] == ["status_changed", "status_changed"]


def test_reporting_the_current_status_again_records_nothing(depot: Depot) -> None:
    unit = depot.register()
    depot.assign(unit, FLOOD)
    depot.status(unit, EN_ROUTE)
    unit.collect_events()
    depot.status(unit, EN_ROUTE)
    depot.status(unit, EN_ROUTE)
    assert recorded(unit) == []


# ---- release ----


def test_a_unit_is_released_only_for_the_incident_it_serves(depot: Depot) -> None:
    unit = depot.register()
    depot.assign(unit, FLOOD)
    depot.status(unit, ON_SCENE)
    unit.collect_events()

    assert unit.release(FIRE, depot.cause("dispatch"), NOW) is False
    assert recorded(unit) == []
    assert unit.view.incident_id == FLOOD and unit.view.status == ON_SCENE

    assert unit.release(FLOOD, depot.cause("dispatch"), NOW) is True
    assert [name for name, _ in recorded(unit)] == ["released"]
    assert unit.available

    assert unit.release(FLOOD, depot.cause("dispatch"), NOW) is False  # a repeat
    assert recorded(unit) == []


def test_an_available_unit_has_nothing_to_release(depot: Depot) -> None:
    unit = depot.register()
    assert unit.release("", depot.cause(), NOW) is False
    assert recorded(unit) == []


# ---- distance ----


def test_distance_from_peoples_square_to_the_bund() -> None:
    peoples_square = common_pb2.GeoPoint(lat=31.2317, lon=121.4733)
    bund = (31.2400, 121.4903)  # Chen Yi Square, on the Bund
    d = distance_km(peoples_square, *bund)
    assert 1.0 < d < 2.5
    assert d == pytest.approx(1.86, abs=0.05)
    # Symmetric.
    back = distance_km(common_pb2.GeoPoint(lat=bund[0], lon=bund[1]),
                       peoples_square.lat, peoples_square.lon)
    assert back == pytest.approx(d)


def test_distance_to_the_same_point_is_zero() -> None:
    here = common_pb2.GeoPoint(lat=31.2317, lon=121.4733)
    assert distance_km(here, here.lat, here.lon) == 0


def test_distance_shanghai_to_beijing_is_a_thousand_km() -> None:
    shanghai = common_pb2.GeoPoint(lat=31.2304, lon=121.4737)
    assert distance_km(shanghai, 39.9042, 116.4074) == pytest.approx(1067, rel=0.01)


def test_one_degree_of_latitude_is_about_111_km() -> None:
    assert distance_km(common_pb2.GeoPoint(lat=0, lon=0), 1, 0) == pytest.approx(111.2,
                                                                                   abs=0.1)


# ---- the full status model (a CAD's) ----

ON_ROAD, RETURNING = U.UNIT_STATUS_AVAILABLE_ON_ROAD, U.UNIT_STATUS_RETURNING
TRANSPORTING, AT_HOSPITAL = U.UNIT_STATUS_TRANSPORTING, U.UNIT_STATUS_AT_HOSPITAL


@pytest.mark.parametrize(("path", "refused"), [
    ([ON_ROAD, RETURNING, AVAILABLE], None),  # patrolling, then home: never on an incident
    ([ON_ROAD, OUT_OF_SERVICE, ON_ROAD], None),
    ([TRANSPORTING], "moves-only-when-assigned"),  # only for an incident
    ([OUT_OF_SERVICE, RETURNING], "unit-status-transition"),  # back in service first
])
def test_a_free_unit_moves_between_the_free_statuses(depot: Depot, path: list[int],
                                                     refused: str | None) -> None:
    unit = depot.register()
    *steps, last = path
    for status in steps:
        depot.status(unit, status)
    if refused is None:
        depot.status(unit, last)
        assert unit.view.status == last and unit.available == (last != OUT_OF_SERVICE)
    else:
        with pytest.raises(RuleViolation, match=refused):
            depot.status(unit, last)


def test_an_ambulance_transports_hands_over_and_goes_back_free(depot: Depot) -> None:
    unit = depot.register("A-1", "ambulance")
    depot.assign(unit)
    for status in (EN_ROUTE, ON_SCENE, TRANSPORTING, AT_HOSPITAL):
        depot.status(unit, status)
        assert not unit.available and unit.view.incident_id == FLOOD
    with pytest.raises(RuleViolation, match="unit-status-transition"):
        depot.status(unit, EN_ROUTE)  # no way back to the road to the scene
    depot.status(unit, RETURNING)  # free again: released from the incident, on its way home
    field, event = recorded(unit)[-1]
    assert (field, event.incident_id, event.status) == ("released", FLOOD, RETURNING)  # type: ignore[attr-defined]
    assert unit.available and unit.view.status == RETURNING and not unit.view.incident_id


def test_capabilities_and_crew_are_registered_and_bounded() -> None:
    cause = Cause(actor="admin", occurred_at=NOW)
    unit = Unit.register(pb.RegisterUnitRequest(
        id="E-1", kind="fire_engine", department="fire", home=HUANGPU_STATION,
        capabilities=["rescue_team", "fire_engine", "rescue_team"], crew_size=6), cause, NOW)
    assert unit.kinds == ("fire_engine", "rescue_team") and unit.view.crew_size == 6
    with pytest.raises(InvalidArgument, match="crew_size"):
        Unit.register(pb.RegisterUnitRequest(id="E-2", kind="fire_engine", department="fire",
                                             home=HUANGPU_STATION, crew_size=1000), cause, NOW)
