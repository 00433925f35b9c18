"""The fleet index and travel-time ranking: the nearest units found by looking at a few
cells are the nearest of all, and the unit that arrives first is the one sent."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lifeline.errors import InvalidArgument
from lifeline_resources import roads as roads_module
from lifeline_resources.fleet import MAX_PASSED_OVER, Fleet, FleetUnit, Point, distance_km
from lifeline_resources.roads import RoadNetwork

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
ROADS = Path(__file__).resolve().parents[2] / "roads" / "xujiahui_demo.geojson"
KINDS = ("ambulance", "fire_engine", "police_car", "rescue_team")


def unit(unit_id: str, at: Point, kind: str = "ambulance", *, available: bool = True,
         capabilities: tuple[str, ...] = ()) -> FleetUnit:
    return FleetUnit(unit_id, (kind, *capabilities), "medical", at, available,
                     "AVAILABLE" if available else "ON_SCENE",
                     "" if available else "incident-9")


def test_the_nearest_found_cell_by_cell_are_the_nearest_of_the_whole_fleet() -> None:
    rng = random.Random(11)
    fleet = Fleet()
    units = [unit(f"U{n}", (31.0 + rng.random() * 0.45, 121.2 + rng.random() * 0.5),
                  rng.choice(KINDS), available=rng.random() < 0.8) for n in range(4000)]
    for u in units:
        fleet.upsert(u)
    for _ in range(300):
        place = (31.0 + rng.random() * 0.45, 121.2 + rng.random() * 0.5)
        kind, count = rng.choice(KINDS), rng.randint(1, 12)
        exclude = {u.id for u in rng.sample(units, 50)}
        found, busy = fleet.nearest(kind, place, count, NOW, exclude)
        truth = sorted((u for u in units if kind in u.kinds and u.available
                        and u.id not in exclude),
                       key=lambda u: (distance_km(u.home, place), u.id))[:count]
        assert [c.unit.id for c in found] == [u.id for u in truth]
        assert all(not c.unit.available and c.distance_km < found[-1].distance_km
                   for c in busy)
        # The busy ones reported are the nearest (all that a choice reports passed over).
        nearer = sorted((u for u in units if kind in u.kinds and not u.available
                         and u.id not in exclude and found
                         and distance_km(u.home, place) < found[-1].distance_km),
                        key=lambda u: (distance_km(u.home, place), u.id))
        reported = sorted(busy, key=lambda c: (c.distance_km, c.unit.id))
        assert [c.unit.id for c in reported[:MAX_PASSED_OVER]] == \
            [u.id for u in nearer[:MAX_PASSED_OVER]]


def test_a_fleet_smaller_than_asked_gives_all_it_has_and_an_empty_kind_nothing() -> None:
    fleet = Fleet()
    fleet.upsert(unit("A-1", (31.2, 121.4)))
    fleet.upsert(unit("A-2", (31.9, 121.9)))  # ~90 km away: still found
    found, _ = fleet.nearest("ambulance", (31.2, 121.4), 5, NOW)
    assert [c.unit.id for c in found] == ["A-1", "A-2"]
    assert fleet.nearest("pump_truck", (31.2, 121.4), 5, NOW) == ([], [])


def test_a_fresh_position_counts_and_a_stale_one_falls_back_to_the_station() -> None:
    fleet = Fleet(stale_after=timedelta(minutes=5))
    fleet.upsert(unit("A-1", (31.30, 121.40)))  # station 11 km north
    fleet.upsert(unit("A-2", (31.22, 121.40)))  # station 2 km north
    assert fleet.report_position("A-1", (31.201, 121.40), NOW) is True
    assert fleet.report_position("A-1", (31.5, 121.40), NOW - timedelta(seconds=1)) is False
    assert fleet.report_position("nobody", (31.2, 121.4), NOW) is None
    place = (31.20, 121.40)
    first = fleet.choose("ambulance", 1, place, NOW + timedelta(minutes=1))
    assert [(c.unit.id, c.origin_label) for c in first.chosen] == [("A-1", "position")]
    later = fleet.choose("ambulance", 1, place, NOW + timedelta(minutes=6))
    assert [c.unit.id for c in later.chosen] == ["A-2"]
    assert fleet.choose("ambulance", 2, place, NOW + timedelta(minutes=6)).chosen[1] \
        .origin_label == "station (position stale)"
    # A status change from its aggregate keeps the position it reported.
    fleet.upsert(unit("A-1", (31.30, 121.40)))
    assert fleet.get("A-1") is not None and fleet.get("A-1").position == (31.201, 121.40)  # type: ignore[union-attr]


def test_a_unit_counts_for_every_kind_it_is_equipped_as() -> None:
    fleet = Fleet()
    fleet.upsert(unit("E-1", (31.2, 121.4), "fire_engine", capabilities=("rescue_team",)))
    choice = fleet.choose("rescue_team", 1, (31.21, 121.4), NOW)
    assert [c.unit.id for c in choice.chosen] == ["E-1"]
    assert choice.chosen[0].kind == "rescue_team"


class Slow:
    """Travel that makes one unit slow whatever its distance."""

    def __init__(self, slow: str, fleet: Fleet) -> None:
        self.slow, self.fleet = slow, fleet

    def basis(self) -> str:
        return "test model"

    def seconds(self, kind: str, origins: list[Point], destination: Point) -> list[float]:
        slow_home = self.fleet.get(self.slow).home  # type: ignore[union-attr]
        return [3600.0 if o == slow_home else distance_km(o, destination) * 100 for o in origins]


def test_the_unit_that_arrives_first_is_sent_and_the_nearer_one_is_said_why_not() -> None:
    fleet = Fleet()
    fleet.upsert(unit("near", (31.201, 121.40)))
    fleet.upsert(unit("far", (31.22, 121.40)))
    fleet.upsert(unit("busy", (31.2005, 121.40), available=False))
    fleet.travel = Slow("near", fleet)
    choice = fleet.choose("ambulance", 1, (31.20, 121.40), NOW)
    assert [(c.unit.id, c.rank) for c in choice.chosen] == [("far", 1)]
    reasons = dict(choice.passed_over)
    assert reasons["near"].startswith("arrives later: 60.0 min")
    assert reasons["busy"] == "on_scene for incident incident-9"
    assert choice.basis == "test model"


def test_closing_the_underpass_sends_the_unit_from_the_other_side_of_the_rail_line() -> None:
    roads = RoadNetwork.load(ROADS)
    fleet = Fleet(roads)
    fleet.upsert(unit("pump-south", (31.1884, 121.4420), "pump_truck"))  # 0.9 km away
    fleet.upsert(unit("pump-north", (31.2080, 121.4376), "pump_truck"))  # 1.3 km away
    underpass = (31.1960, 121.4376)
    open_roads = fleet.choose("pump_truck", 1, underpass, NOW)
    assert [c.unit.id for c in open_roads.chosen] == ["pump-south"]
    roads.close("xjh-underpass", "flooded")
    closed = fleet.choose("pump_truck", 1, underpass, NOW)
    assert [c.unit.id for c in closed.chosen] == ["pump-north"]
    assert closed.chosen[0].eta_seconds == pytest.approx(120, abs=5)
    assert "arrives later: 6.0 min" in dict(closed.passed_over)["pump-south"]
    assert closed.basis == "road network 'xujiahui-demo' (6 segments, 1 closed)"
    roads.reopen("xjh-underpass")
    assert fleet.choose("pump_truck", 1, underpass, NOW).chosen[0].unit.id == "pump-south"
    with pytest.raises(InvalidArgument, match="segment_id"):
        roads.close("no-such-road", "x")


def test_a_closure_that_lands_while_a_route_is_computed_is_not_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The projector's thread closes a road while a consumer's thread computes travel times
    on the roads as they were: the times computed on the open road must not be kept for
    that destination, or units go on being sent through the flooded underpass."""
    roads = RoadNetwork.load(ROADS)
    fleet = Fleet(roads)
    fleet.upsert(unit("pump-south", (31.1884, 121.4420), "pump_truck"))
    fleet.upsert(unit("pump-north", (31.2080, 121.4376), "pump_truck"))
    underpass = (31.1960, 121.4376)
    computing = roads_module.dijkstra

    def closed_meanwhile(*args: Any, **kwargs: Any) -> Any:
        times = computing(*args, **kwargs)
        monkeypatch.setattr(roads_module, "dijkstra", computing)  # once
        closer = threading.Thread(target=roads.close, args=("xjh-underpass", "flooded"))
        closer.start()
        closer.join()
        return times

    monkeypatch.setattr(roads_module, "dijkstra", closed_meanwhile)
    assert fleet.choose("pump_truck", 1, underpass, NOW).chosen[0].unit.id == "pump-north"
    assert fleet.choose("pump_truck", 1, underpass, NOW).chosen[0].unit.id == "pump-north"
