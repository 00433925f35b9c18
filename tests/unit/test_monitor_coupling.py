"""Coupled risks: rules as data, and a compound warning raised from warnings in neighbouring
H3 cells, kept up to date and cleared when they clear."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import h3
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor import coupling, grid
from lifeline_monitor.domain import HazardWatch, Sensor, watch_id_of

from tests.unit.test_monitor_grid import ROOT, Store, load

L = common_pb2.WarningLevel
NONE, YELLOW, ORANGE, RED = (L.WARNING_LEVEL_NONE, L.WARNING_LEVEL_YELLOW,
                             L.WARNING_LEVEL_ORANGE, L.WARNING_LEVEL_RED)
XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)  # metro station
PUHUITANG = common_pb2.GeoPoint(lat=31.1905, lon=121.4330)  # creek, one ring away
STADIUM = common_pb2.GeoPoint(lat=31.1830, lon=121.4370)  # metro station, two rings away
NOW = datetime(2026, 7, 20, 7, 0, tzinfo=UTC)
RULES = coupling.load_rules(ROOT / "coupled_risks")
METRO = next(r for r in RULES if r.id == "metro_flooding")


class City:
    """The loaded Xuhui grid, sensors in it, and monitor's coupled-risk reaction to every
    warning that moves (as its own consumer does)."""

    def __init__(self) -> None:
        self.store = Store()
        load(self.store, grid.read_grid_file(ROOT / "grids" / "xuhui.toml"))
        self.sensors: dict[str, Sensor] = {}

    def sensor(self, sensor_id: str, hazard: str, where: common_pb2.GeoPoint) -> None:
        self.sensors[sensor_id] = Sensor.register(grid.placed(pb.RegisterSensorRequest(
            id=sensor_id, kind=hazard, hazard=hazard, location=where, unit_of_measure="x",
            direction=pb.DIRECTION_HIGHER_IS_WORSE,
            thresholds=pb.Thresholds(blue=1, yellow=2, orange=3, red=4)), 8),
            Cause("gw", NOW), NOW)

    def read(self, sensor_id: str, value: float) -> None:
        sensor, cause = self.sensors[sensor_id], Cause("gw", NOW)
        reading = pb.Reading(sensor_id=sensor_id, value=value)
        level = sensor.level_for(value)
        cell, hazard = sensor.view.grid_cell, sensor.view.hazard
        watch = self.store.find(HazardWatch, watch_id_of(cell, hazard))
        sensor.view.level = level  # type: ignore[assignment]
        if watch is None:
            watch = HazardWatch.open(sensor.view, level, reading, cause, NOW)
        else:
            watch.sensor_moved(sensor.view, level, reading, cause, NOW)
        self.store.record(watch)
        coupling.warning_moved(self.store, RULES, hazard, cell,  # type: ignore[arg-type]
                               Cause("monitor", NOW), NOW)

    def warning(self, where: common_pb2.GeoPoint, hazard: str) -> pb.Warning | None:
        watch = self.store.find(HazardWatch, watch_id_of(grid.cell_of(where), hazard))
        return None if watch is None else watch.warning


def test_the_shipped_rules_load_with_their_reasons() -> None:
    assert {r.id for r in RULES} >= {"metro_flooding", "gas_explosion_risk",
                                     "hospital_blackout", "embankment_overtopping"}
    assert all(r.reason for r in RULES)
    assert METRO.requires_assets == {"metro_station"}
    assert METRO.conditions == (coupling.Condition("heavy_rain", RED, 0),
                                coupling.Condition("river_flooding", ORANGE, 1))


def test_rain_on_a_station_and_a_river_one_ring_away_raise_metro_flooding_and_clear_it() -> None:
    city = City()
    city.sensor("rain-xjh", "heavy_rain", XUJIAHUI)
    city.sensor("creek-phc", "river_flooding", PUHUITANG)
    assert h3.grid_distance(grid.cell_of(XUJIAHUI), grid.cell_of(PUHUITANG)) == 1

    city.read("rain-xjh", 4.5)  # red rain on the station: no compound on its own
    assert city.warning(XUJIAHUI, "metro_flooding") is None
    city.read("creek-phc", 3.2)  # the creek next door at orange

    compound = city.warning(XUJIAHUI, "metro_flooding")
    assert compound is not None
    assert compound.status == pb.WARNING_STATUS_ACTIVE
    assert compound.id == f"{grid.cell_of(XUJIAHUI)}/metro_flooding/1"
    assert compound.level == ORANGE
    assert compound.coupled_rule == "metro_flooding"
    rain = city.warning(XUJIAHUI, "heavy_rain")
    creek = city.warning(PUHUITANG, "river_flooding")
    assert rain is not None and creek is not None
    assert sorted(compound.sources) == sorted([rain.id, creek.id])
    assert compound.responsible.departments == ["metro", "water", "police", "fire"]
    assert compound.responsible.grid_officer == "wang-fang"
    # The creek's own cell has no metro station: no compound there.
    assert city.warning(PUHUITANG, "metro_flooding") is None

    city.read("creek-phc", 4.4)  # both red now: so is the picture
    compound = city.warning(XUJIAHUI, "metro_flooding")
    assert compound is not None and compound.level == RED

    city.read("creek-phc", 0.5)  # the creek falls back: the rule no longer holds
    compound = city.warning(XUJIAHUI, "metro_flooding")
    assert compound is not None
    assert compound.status == pb.WARNING_STATUS_CLEARED
    assert [e for e in city.store.aggregates.values()
            if isinstance(e, HazardWatch) and e.warning.hazard == "metro_flooding"
            and e.active is not None] == []

    city.read("creek-phc", 3.5)  # and rises again: a new compound warning
    again = city.warning(XUJIAHUI, "metro_flooding")
    assert again is not None and again.id.endswith("/metro_flooding/2")


def test_a_river_two_rings_away_or_rain_below_red_make_no_metro_flooding() -> None:
    city = City()
    city.sensor("rain-xjh", "heavy_rain", XUJIAHUI)
    city.sensor("river-stadium", "river_flooding", STADIUM)
    city.sensor("creek-phc", "river_flooding", PUHUITANG)
    city.read("rain-xjh", 4.5)
    city.read("river-stadium", 4.5)  # two rings away: out of reach
    assert city.warning(XUJIAHUI, "metro_flooding") is None
    city.read("rain-xjh", 3.5)  # orange rain
    city.read("creek-phc", 4.5)
    assert city.warning(XUJIAHUI, "metro_flooding") is None


def test_a_rule_needs_its_asset_in_the_cell() -> None:
    city = City()
    puhuitang_neighbour = h3.cell_to_latlng(grid.cell_of(PUHUITANG))
    city.sensor("rain-phc", "heavy_rain", PUHUITANG)  # the creek's cell has no station
    city.sensor("creek-phc", "river_flooding", common_pb2.GeoPoint(
        lat=puhuitang_neighbour[0], lon=puhuitang_neighbour[1]))
    city.read("rain-phc", 4.5)
    city.read("creek-phc", 4.5)
    assert city.warning(PUHUITANG, "metro_flooding") is None


RULE = {"id": '"r"', "hazard": '"r"', "level": '"red"', "reason": '"why"'}
CONDITION = {"hazard": '"x"', "level": '"red"', "within": "0"}


@pytest.mark.parametrize(("rule", "condition", "field"), [
    ({"id": '"other"'}, {}, "id"),
    ({"level": '"purple"'}, {}, "level"),
    ({"reason": '""'}, {}, "reason"),
    ({"requires_assets": '["metro station"]'}, {}, "requires_assets"),
    ({}, {"within": "9"}, "conditions[0].within"),
    ({}, {"hazard": '"r"'}, "conditions[0].hazard"),
    ({}, {"near": "1"}, "conditions[0].near"),
    ({}, {"level": '"grey"'}, "conditions[0].level"),
])
def test_a_bad_rule_is_refused_naming_the_file_and_field(
        tmp_path: Path, rule: dict[str, str], condition: dict[str, str], field: str) -> None:
    top = "\n".join(f"{k} = {v}" for k, v in {**RULE, **rule}.items())
    cond = "\n".join(f"{k} = {v}" for k, v in {**CONDITION, **condition}.items())
    (tmp_path / "r.toml").write_text(f"{top}\n\n[[conditions]]\n{cond}\n")
    with pytest.raises(coupling.RuleError) as refused:
        coupling.load_rules(tmp_path)
    assert f"r.toml: {field}:" in str(refused.value)


def test_a_rule_without_conditions_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text("\n".join(f"{k} = {v}" for k, v in RULE.items()))
    with pytest.raises(coupling.RuleError, match=r"r\.toml: conditions:"):
        coupling.load_rules(tmp_path)
