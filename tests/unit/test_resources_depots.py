"""Depots and stock: a request's materials come from the nearest depots that hold them,
split across depots when one has too little; what none holds is a shortfall; stock never
falls below zero, however reservations, uses, returns and deliveries interleave. And the
incident asks for the plan's materials once, escalation only for what it adds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, event_of
from lifeline.incident.aggregate import Incident
from lifeline.incident.response import Response
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline_resources.depots import (
    MAX_QUANTITY,
    Depot,
    DepotDirectory,
    depot_id_of,
    reserve_nearest,
)

NOW = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)
FIELD = datetime(2024, 7, 20, 7, 0, tzinfo=UTC)
XUJIAHUI = common_pb2.GeoPoint(lat=31.1950, lon=121.4370)  # the flooded underpass
NEAR = common_pb2.GeoPoint(lat=31.2000, lon=121.4400)  # about 0.6 km away
FAR = common_pb2.GeoPoint(lat=31.2300, lon=121.4700)  # about 5 km away
CAUSE = Cause("resources", FIELD)


def bags(quantity: int, name: str = "sandbags", unit: str = "bag") -> pb.Material:
    return pb.Material(name=name, quantity=quantity, unit=unit)


def depot(depot_id: str, where: common_pb2.GeoPoint, *stock: pb.Material,
          department: str = "water") -> Depot:
    made = Depot.register(pb.RegisterDepotRequest(id=depot_id, position=where,
                                                  department=department, stock=stock),
                          CAUSE, NOW)
    made.collect_events()
    return made


def stock(d: Depot, material: str = "sandbags") -> tuple[int, int, int]:
    s = next(s for s in d.view.stock if s.material == material)
    return s.available, s.reserved, s.consumed


def ranked(*depots: Depot) -> list[tuple[Depot, float]]:
    from lifeline_resources.domain import distance_km

    return sorted(((d, distance_km(XUJIAHUI, d.view.position.lat, d.view.position.lon))
                   for d in depots), key=lambda pair: pair[1])


def recorded(d: Depot) -> list[tuple[str, object]]:
    return [event_of(Depot.decode(e.payload)) for e in d.collect_events()]  # type: ignore[attr-defined]


def history(incident: Incident) -> list[incident_pb2.IncidentEvent]:
    return [cast(incident_pb2.IncidentEvent, Incident.decode(e.payload))  # type: ignore[attr-defined]
            for e in incident.collect_events()]


# ---- registering and restocking ----


@pytest.mark.parametrize(("field", "request_"), [
    ("id", pb.RegisterDepotRequest(department="water", position=NEAR)),
    ("department", pb.RegisterDepotRequest(id="D-1", department=" ", position=NEAR)),
    ("position", pb.RegisterDepotRequest(id="D-1", department="water")),
    ("position", pb.RegisterDepotRequest(id="D-1", department="water",
                                         position=common_pb2.GeoPoint(lat=95, lon=121))),
    ("stock[0].unit", pb.RegisterDepotRequest(id="D-1", department="water", position=NEAR,
                                              stock=[bags(5, unit="")])),
    ("stock[1].name", pb.RegisterDepotRequest(id="D-1", department="water", position=NEAR,
                                              stock=[bags(5), bags(7)])),
])
def test_registration_names_the_bad_field(field: str, request_: pb.RegisterDepotRequest
                                          ) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Depot.register(request_, CAUSE, NOW)
    assert refused.value.field == field


def test_a_registered_depot_holds_its_opening_stock_all_available() -> None:
    d = depot("D-1", NEAR, bags(300), bags(2, "portable_pumps", "set"))
    assert d.id == depot_id_of("D-1")
    assert stock(d) == (300, 0, 0)
    assert stock(d, "portable_pumps") == (2, 0, 0)
    assert d.view.name == "D-1"


def test_restock_adds_in_the_depots_unit_and_refuses_another_unit() -> None:
    d = depot("D-1", NEAR, bags(300))
    d.restock([bags(200), bags(10, "life_jackets", "piece")], CAUSE, NOW)
    assert stock(d) == (500, 0, 0) and stock(d, "life_jackets") == (10, 0, 0)
    d.collect_events()
    with pytest.raises(InvalidArgument) as refused:
        d.restock([bags(5, unit="pallet")], CAUSE, NOW)
    assert refused.value.field == "materials[0].unit"
    for bad, where in (([], "materials"), ([bags(0)], "materials[0].quantity"),
                       ([bags(MAX_QUANTITY + 1)], "materials[0].quantity"),
                       ([bags(10), bags(MAX_QUANTITY - 5, "life_jackets", "piece")],
                        "materials[1].quantity")):
        with pytest.raises(InvalidArgument) as refused:
            d.restock(bad, CAUSE, NOW)
        assert refused.value.field == where
    assert recorded(d) == [] and stock(d) == (500, 0, 0)


# ---- reserving from the nearest depots ----


def test_a_need_is_reserved_from_the_nearest_depot_that_holds_it() -> None:
    near, far = depot("D-NEAR", NEAR, bags(300)), depot("D-FAR", FAR, bags(5000))
    answer = reserve_nearest([bags(200)], ranked(far, near), "incident-1", "req-1", CAUSE, NOW)
    assert [(r.depot_id, r.material.quantity) for r in answer.reservations] == [("D-NEAR", 200)]
    assert answer.reservations[0].distance_km == pytest.approx(0.6, abs=0.1)
    assert not answer.shortfalls
    assert answer.depots == [near]
    assert stock(near) == (100, 200, 0) and stock(far) == (5000, 0, 0)
    assert [r.quantity for r in near.view.reservations] == [200]


def test_a_need_too_large_for_one_depot_is_split_nearest_first() -> None:
    near, far = depot("D-NEAR", NEAR, bags(300)), depot("D-FAR", FAR, bags(5000))
    answer = reserve_nearest([bags(2000)], ranked(near, far), "incident-1", "req-1", CAUSE,
                             NOW)
    assert [(r.depot_id, r.material.quantity) for r in answer.reservations] == [
        ("D-NEAR", 300), ("D-FAR", 1700)]
    assert stock(near) == (0, 300, 0) and stock(far) == (3300, 1700, 0)
    # One reservation event per depot for the request.
    assert [kind for kind, _ in recorded(near)] == ["reserved"]
    assert [kind for kind, _ in recorded(far)] == ["reserved"]


def test_what_no_depot_holds_is_a_shortfall_and_nothing_goes_below_zero() -> None:
    near = depot("D-NEAR", NEAR, bags(300), bags(1, "portable_pumps", "set"))
    far = depot("D-FAR", FAR, bags(100, "sandbags", "pallet"))  # another unit: not counted
    answer = reserve_nearest([bags(500), bags(3, "portable_pumps", "set"),
                              bags(20, "life_jackets", "piece")], ranked(near, far),
                             "incident-1", "req-1", CAUSE, NOW)
    assert [(r.depot_id, r.material.name, r.material.quantity)
            for r in answer.reservations] == [("D-NEAR", "sandbags", 300),
                                              ("D-NEAR", "portable_pumps", 1)]
    assert [(s.material, s.unit, s.missing) for s in answer.shortfalls] == [
        ("sandbags", "bag", 200), ("portable_pumps", "set", 2), ("life_jackets", "piece", 20)]
    assert stock(near) == (0, 300, 0) and stock(far) == (100, 0, 0)


def test_a_depot_refuses_to_reserve_more_than_it_has() -> None:
    d = depot("D-1", NEAR, bags(10))
    with pytest.raises(RuleViolation, match="stock-never-negative"):
        d.reserve("incident-1", "req-1", [bags(11)], CAUSE, NOW)
    assert recorded(d) == [] and stock(d) == (10, 0, 0)


def test_the_directory_ranks_every_depot_by_distance() -> None:
    directory = DepotDirectory.listing(None, depot("D-FAR", FAR).view, CAUSE, NOW)
    directory = DepotDirectory.listing(directory, depot("D-NEAR", NEAR).view, CAUSE, NOW)
    assert [depot_id for depot_id, _ in directory.nearest(XUJIAHUI)] == ["D-NEAR", "D-FAR"]


# ---- consumption, return, closure ----


def test_consumed_leaves_the_books_returned_is_available_again() -> None:
    d = depot("D-1", NEAR, bags(300))
    d.reserve("incident-1", "req-1", [bags(200)], CAUSE, NOW)
    d.report_use("incident-1", pb.MATERIAL_USE_CONSUMED, [bags(150)], CAUSE, NOW)
    assert stock(d) == (100, 50, 150)
    d.report_use("incident-1", pb.MATERIAL_USE_RETURNED, [bags(20)], CAUSE, NOW)
    assert stock(d) == (120, 30, 150)
    assert [(r.incident_id, r.quantity) for r in d.view.reservations] == [("incident-1", 30)]
    d.collect_events()
    with pytest.raises(RuleViolation, match="use-what-was-reserved"):
        d.report_use("incident-1", pb.MATERIAL_USE_CONSUMED, [bags(31)], CAUSE, NOW)
    with pytest.raises(RuleViolation, match="use-what-was-reserved"):
        d.report_use("incident-2", pb.MATERIAL_USE_RETURNED, [bags(1)], CAUSE, NOW)
    assert recorded(d) == []


def test_closure_returns_what_the_incident_still_held_and_only_that() -> None:
    d = depot("D-1", NEAR, bags(300))
    d.reserve("incident-1", "req-1", [bags(200)], CAUSE, NOW)
    d.reserve("incident-2", "req-2", [bags(50)], CAUSE, NOW)
    d.report_use("incident-1", pb.MATERIAL_USE_CONSUMED, [bags(120)], CAUSE, NOW)
    d.collect_events()
    assert d.return_all("incident-1", CAUSE, NOW)
    assert stock(d) == (130, 50, 120)
    assert [(r.incident_id, r.quantity) for r in d.view.reservations] == [("incident-2", 50)]
    assert [kind for kind, _ in recorded(d)] == ["returned"]
    assert not d.return_all("incident-1", CAUSE, NOW)  # nothing left: nothing recorded
    assert recorded(d) == []


# ---- property: stock is conserved and never negative ----

steps = st.lists(st.one_of(
    st.tuples(st.just("request"), st.integers(0, 3), st.integers(1, 400)),
    st.tuples(st.sampled_from(["consume", "return"]), st.integers(0, 3), st.integers(0, 2),
              st.integers(1, 200)),
    st.tuples(st.just("restock"), st.integers(0, 2), st.integers(1, 300)),
    st.tuples(st.just("close"), st.integers(0, 3)),
), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(steps=steps, opening=st.lists(st.integers(0, 500), min_size=3, max_size=3))
def test_any_interleaving_keeps_stock_conserved_and_never_negative(
        steps: list[tuple[Any, ...]], opening: list[int]) -> None:
    places = [NEAR, FAR, common_pb2.GeoPoint(lat=31.18, lon=121.42)]
    depots = [Depot.register(pb.RegisterDepotRequest(id=f"D-{i}", position=places[i],
                                                     department="water", stock=[bags(q)]),
                             CAUSE, NOW) for i, q in enumerate(opening)]
    delivered = sum(opening)
    for step in steps:
        kind = step[0]
        try:
            if kind == "request":
                _, incident, quantity = step
                answer = reserve_nearest([bags(quantity)], ranked(*depots),
                                         f"incident-{incident}", "req", CAUSE, NOW)
                got = sum(r.material.quantity for r in answer.reservations)
                short = sum(s.missing for s in answer.shortfalls)
                assert got + short == quantity
            elif kind in ("consume", "return"):
                _, incident, which, quantity = step
                use = pb.MATERIAL_USE_CONSUMED if kind == "consume" else pb.MATERIAL_USE_RETURNED
                depots[which].report_use(f"incident-{incident}", use, [bags(quantity)], CAUSE,
                                         NOW)
            elif kind == "restock":
                _, which, quantity = step
                depots[which].restock([bags(quantity)], CAUSE, NOW)
                delivered += quantity
            else:
                for d in depots:
                    d.return_all(f"incident-{step[1]}", CAUSE, NOW)
        except RuleViolation:
            pass
        for d in depots:
            available, reserved, _ = stock(d)
            assert available >= 0 and reserved >= 0
            assert reserved == sum(r.quantity for r in d.view.reservations)
            assert all(r.quantity > 0 for r in d.view.reservations)
        # Nothing made or lost: every bag is in a depot, held by an incident, or used.
        assert sum(sum(stock(d)) for d in depots) == delivered
    # The recorded history replays to the same depot.
    for d in depots:
        replayed: Any = None
        for e in d.collect_events():
            replayed = e.mutate(replayed)
        assert replayed.view == d.view


# ---- the incident asks for the plan's materials ----


def incident_declared(materials: list[incident_pb2.Material]) -> Incident:
    incident = Incident.open_for_warning(
        "cell/urban_flooding/1", "urban_flooding", common_pb2.WARNING_LEVEL_ORANGE, XUJIAHUI,
        "cell", Cause("monitor", FIELD), NOW)
    incident.declare(incident_pb2.CATEGORY_NATURAL_DISASTER, "urban_flooding",
                     incident_pb2.GRADE_III, Response(units=[], materials=materials),
                     Cause("officer-li", FIELD + timedelta(minutes=5)), NOW)
    return incident


def m(name: str, quantity: int, unit: str) -> incident_pb2.Material:
    return incident_pb2.Material(name=name, quantity=quantity, unit=unit)


def test_declaring_requests_the_plans_materials_and_escalation_only_what_it_adds() -> None:
    incident = incident_declared([m("sandbags", 500, "bag"), m("portable_pumps", 2, "set")])
    requested = [e for e in history(incident) if event_of(e)[0] == "resources_requested"]
    assert len(requested) == 1
    first = requested[0].resources_requested
    assert [(x.name, x.quantity) for x in first.materials] == [("sandbags", 500),
                                                               ("portable_pumps", 2)]
    later = Cause("dispatch", FIELD + timedelta(minutes=6))
    incident.reserve_material(first.request_id, "D-NEAR", m("sandbags", 300, "bag"), 0.6,
                              later, NOW)
    incident.reserve_material(first.request_id, "D-FAR", m("sandbags", 200, "bag"), 5.0,
                              later, NOW)
    incident.record_material_shortfall(first.request_id, m("portable_pumps", 2, "set"), later,
                                       NOW)
    incident.collect_events()
    incident.regrade(incident_pb2.GRADE_II, Response(units=[], materials=[
        m("sandbags", 2000, "bag"), m("portable_pumps", 6, "set"), m("life_jackets", 100,
                                                                      "piece")]),
        Cause("officer-li", FIELD + timedelta(minutes=30), reason="water rising"), NOW)
    again = [e.resources_requested for e in history(incident)
             if event_of(e)[0] == "resources_requested"]
    # Sandbags: 500 already reserved; pumps: the 2 missing are asked for again with 4 more.
    assert [(x.name, x.quantity) for x in again[0].materials] == [
        ("sandbags", 1500), ("portable_pumps", 6), ("life_jackets", 100)]
    v = incident.view
    assert [(r.depot_id, r.material.quantity) for r in v.materials_reserved] == [
        ("D-NEAR", 300), ("D-FAR", 200)]
    assert [(x.name, x.quantity) for x in v.material_shortfalls] == [("portable_pumps", 2)]
    assert [(x.name, x.quantity) for x in v.materials_requested] == [
        ("sandbags", 2000), ("portable_pumps", 8), ("life_jackets", 100)]


def test_materials_reserved_replay_to_the_same_incident() -> None:
    incident = incident_declared([m("sandbags", 200, "bag")])
    request_id = incident.view.version  # any request id will do for the fold
    incident.reserve_material(str(request_id), "D-1", m("sandbags", 150, "bag"), 1.2,
                              Cause("dispatch", FIELD + timedelta(minutes=6)), NOW)
    incident.record_material_shortfall(str(request_id), m("sandbags", 50, "bag"),
                                       Cause("dispatch", FIELD + timedelta(minutes=6)), NOW)
    assert IncidentState.replay(history(incident)).view == incident.view
    assert incident.state.committed_material("sandbags") == 150


def test_consumption_and_returns_reach_the_incident_while_it_is_active() -> None:
    incident = incident_declared([m("sandbags", 200, "bag")])
    later = Cause("dispatch", FIELD + timedelta(minutes=40))
    assert incident.record_material_use("D-1", m("sandbags", 150, "bag"), True, later, NOW)
    assert incident.record_material_use("D-1", m("sandbags", 20, "bag"), False, later, NOW)
    assert incident.record_material_use("D-2", m("sandbags", 5, "bag"), True, later, NOW)
    v = incident.view
    assert [(x.name, x.quantity) for x in v.materials_consumed] == [("sandbags", 155)]
    assert [(x.name, x.quantity) for x in v.materials_returned] == [("sandbags", 20)]
    assert IncidentState.replay(history(incident)).view == v

    warning = Incident.open_for_warning(
        "cell/urban_flooding/2", "urban_flooding", common_pb2.WARNING_LEVEL_ORANGE, XUJIAHUI,
        "cell", Cause("monitor", FIELD), NOW)
    warning.collect_events()
    assert not warning.record_material_use("D-1", m("sandbags", 1, "bag"), True, later, NOW)
    assert warning.collect_events() == []
