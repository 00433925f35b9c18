"""Monitor's domain: sensor registration rules, graded thresholds, and one warning per grid
cell and hazard however many sensors see it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, event_of, from_timestamp, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor.domain import (
    HazardWatch,
    Sensor,
    grid_cell_of,
    sensor_id_of,
    validate_sensor,
    watch_id_of,
)

L = common_pb2.WarningLevel
NONE, BLUE, YELLOW = L.WARNING_LEVEL_NONE, L.WARNING_LEVEL_BLUE, L.WARNING_LEVEL_YELLOW
ORANGE, RED = L.WARNING_LEVEL_ORANGE, L.WARNING_LEVEL_RED
HIGHER, LOWER = pb.DIRECTION_HIGHER_IS_WORSE, pb.DIRECTION_LOWER_IS_WORSE
PEOPLES_SQUARE = common_pb2.GeoPoint(lat=31.2317, lon=121.4733)
NEARBY = common_pb2.GeoPoint(lat=31.2351, lon=121.4762)  # same H3 cell at resolution 8
CELL = "88309959d1fffff"
NOW = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)  # wall clock of recording


def water_level(sensor_id: str = "wl-017", **overrides: Any) -> pb.RegisterSensorRequest:
    """A water-level gauge: centimetres of water on the road, higher is worse."""
    req = pb.RegisterSensorRequest(
        id=sensor_id, kind="water_level", hazard="urban_flooding", location=PEOPLES_SQUARE,
        unit_of_measure="cm", direction=HIGHER,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50))
    for name, value in overrides.items():
        if isinstance(value, pb.Thresholds | common_pb2.GeoPoint):
            getattr(req, name).CopyFrom(value)
        else:
            setattr(req, name, value)
    return req


def dissolved_oxygen(sensor_id: str = "do-3") -> pb.RegisterSensorRequest:
    """Dissolved oxygen in a river, mg/L: lower is worse."""
    return pb.RegisterSensorRequest(
        id=sensor_id, kind="dissolved_oxygen", hazard="water_pollution",
        location=PEOPLES_SQUARE, unit_of_measure="mg/L", direction=LOWER,
        thresholds=pb.Thresholds(blue=5, yellow=4, orange=3, red=2))


class Gateway:
    """Readings arrive with their field time from the simulation clock."""

    def __init__(self) -> None:
        self.clock = SimulationClock(datetime(2024, 7, 1, 4, 0, tzinfo=UTC))

    def cause(self, actor: str = "gateway-7") -> Cause:
        return Cause(actor=actor, occurred_at=self.clock.now())

    def register(self, req: pb.RegisterSensorRequest) -> Sensor:
        return Sensor.register(req, self.cause("operator"), NOW)

    def reading(self, sensor: Sensor, value: float) -> pb.Reading:
        return pb.Reading(sensor_id=sensor.view.id, value=value,
                          measured_at=to_timestamp(self.clock.now()))


# ---- registration ----


def test_a_valid_sensor_registers_in_the_grid_cell_of_its_location() -> None:
    gateway = Gateway()
    sensor = gateway.register(water_level())
    assert sensor.id == sensor_id_of("wl-017")
    assert sensor.view.grid_cell == CELL == grid_cell_of(PEOPLES_SQUARE)
    assert sensor.view.level == NONE
    assert sensor.view.thresholds == pb.Thresholds(blue=10, yellow=20, orange=30, red=50)


def test_an_explicit_grid_cell_is_kept() -> None:
    sensor = Gateway().register(water_level(grid_cell="88309959d3fffff"))
    assert sensor.view.grid_cell == "88309959d3fffff"


def test_lower_is_worse_thresholds_falling_from_blue_to_red_are_valid() -> None:
    validate_sensor(dissolved_oxygen())


@pytest.mark.parametrize("thresholds", [
    pb.Thresholds(blue=20, yellow=10, orange=30, red=50),  # blue above yellow
    pb.Thresholds(blue=10, yellow=20, orange=20, red=50),  # two equal
    pb.Thresholds(blue=50, yellow=30, orange=20, red=10),  # lower-is-worse order
    pb.Thresholds(blue=10, yellow=20, orange=30, red=29),
    pb.Thresholds(),  # not given: all zero
], ids=["swapped", "equal", "reversed", "red-below-orange", "missing"])
def test_higher_is_worse_thresholds_must_rise_strictly(thresholds: pb.Thresholds) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(water_level(thresholds=thresholds))
    assert refused.value.field == "thresholds"
    assert "rise" in str(refused.value)


@pytest.mark.parametrize("thresholds", [
    pb.Thresholds(blue=2, yellow=3, orange=4, red=5),  # higher-is-worse order
    pb.Thresholds(blue=5, yellow=4, orange=4, red=2),  # two equal
    pb.Thresholds(blue=5, yellow=4, orange=2, red=3),
], ids=["rising", "equal", "red-above-orange"])
def test_lower_is_worse_thresholds_must_fall_strictly(thresholds: pb.Thresholds) -> None:
    req = dissolved_oxygen()
    req.thresholds.CopyFrom(thresholds)
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(req)
    assert refused.value.field == "thresholds"
    assert "fall" in str(refused.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_thresholds_must_be_finite(value: float) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(water_level(thresholds=pb.Thresholds(blue=10, yellow=20, orange=30,
                                                             red=value)))
    assert refused.value.field == "thresholds"


@pytest.mark.parametrize("field", ["id", "kind", "hazard", "unit_of_measure"])
@pytest.mark.parametrize("value", ["", "   "])
def test_required_text_fields(field: str, value: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(water_level(**{field: value}))
    assert refused.value.field == field


def test_location_is_required() -> None:
    req = water_level()
    req.ClearField("location")
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(req)
    assert refused.value.field == "location"


@pytest.mark.parametrize(("lat", "lon"), [(90.01, 121.0), (-91, 0), (31.2, 180.5),
                                          (31.2, -181), (math.nan, 121.0)])
def test_location_must_be_on_the_globe(lat: float, lon: float) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(water_level(location=common_pb2.GeoPoint(lat=lat, lon=lon)))
    assert refused.value.field == "location"


@pytest.mark.parametrize(("lat", "lon"), [(90, 180), (-90, -180), (0, 0)])
def test_the_edges_of_the_globe_are_valid(lat: float, lon: float) -> None:
    validate_sensor(water_level(location=common_pb2.GeoPoint(lat=lat, lon=lon)))


def test_direction_is_required() -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_sensor(water_level(direction=pb.DIRECTION_UNSPECIFIED))
    assert refused.value.field == "direction"


def test_an_invalid_sensor_is_not_registered() -> None:
    with pytest.raises(InvalidArgument):
        Gateway().register(water_level(thresholds=pb.Thresholds(blue=3, yellow=2, orange=4,
                                                                red=5)))


# ---- levels ----


@pytest.mark.parametrize(("value", "level"), [
    (-5, NONE), (0, NONE), (9.999, NONE), (10, BLUE), (19.9, BLUE), (20, YELLOW),
    (29.99, YELLOW), (30, ORANGE), (49.99, ORANGE), (50, RED), (120, RED)])
def test_level_for_higher_is_worse(value: float, level: int) -> None:
    sensor = Gateway().register(water_level())
    assert sensor.level_for(value) == level


@pytest.mark.parametrize(("value", "level"), [
    (9, NONE), (5.01, NONE), (5, BLUE), (4.5, BLUE), (4, YELLOW), (3.01, YELLOW),
    (3, ORANGE), (2.01, ORANGE), (2, RED), (0, RED), (-1, RED)])
def test_level_for_lower_is_worse(value: float, level: int) -> None:
    sensor = Gateway().register(dissolved_oxygen())
    assert sensor.level_for(value) == level


def test_a_sensor_records_only_readings_that_change_its_colour() -> None:
    gateway = Gateway()
    sensor = gateway.register(water_level())
    sensor.collect_events()

    changed = []
    for minutes, value in enumerate([3, 8, 12, 15, 19, 24, 36, 31, 55, 60, 8, 2]):
        gateway.clock.advance(timedelta(minutes=minutes))
        changed.append(sensor.observe(gateway.reading(sensor, value), gateway.cause(), NOW))

    assert changed == [False, False, True, False, False, True, True, False, True, False,
                       True, False]
    events = [Sensor.decode(e.payload) for e in sensor.collect_events()]
    assert [event_of(w)[0] for w in events] == ["level_changed"] * 5
    assert [w.level_changed.level for w in events] == [BLUE, YELLOW, ORANGE, RED, NONE]
    assert [w.level_changed.reading.value for w in events] == [12, 24, 36, 55, 8]
    assert sensor.view.level == NONE
    assert sensor.view.level_reading.value == 8


# ---- one warning per cell and hazard ----


class Cell:
    """Sensors in one grid cell on one hazard feeding their watch, as monitor wires them."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.watch: HazardWatch | None = None

    def feed(self, sensor: Sensor, value: float) -> None:
        reading = self.gateway.reading(sensor, value)
        if not sensor.observe(reading, self.gateway.cause(), NOW):
            return
        level, cause = sensor.view.level, self.gateway.cause()
        if self.watch is None:
            if level != NONE:
                self.watch = HazardWatch.open(sensor.view, level, reading, cause, NOW)
        else:
            self.watch.sensor_moved(sensor.view, level, reading, cause, NOW)

    def events(self) -> list[tuple[str, Any]]:
        assert self.watch is not None
        return [event_of(HazardWatch.decode(e.payload)) for e in self.watch.collect_events()]


@pytest.fixture
def flooding() -> tuple[Gateway, Cell, Sensor, Sensor]:
    gateway = Gateway()
    a = gateway.register(water_level("wl-017"))
    b = gateway.register(water_level("wl-018", location=NEARBY))
    assert a.view.grid_cell == b.view.grid_cell == CELL
    return gateway, Cell(gateway), a, b


def test_sensors_of_one_cell_and_hazard_share_one_watch() -> None:
    assert watch_id_of(CELL, "urban_flooding") == watch_id_of(CELL, "urban_flooding")
    assert watch_id_of(CELL, "urban_flooding") != watch_id_of(CELL, "gas_leak")
    assert watch_id_of(CELL, "urban_flooding") != watch_id_of("88309959d3fffff", "urban_flooding")


def test_two_sensors_in_one_cell_raise_one_warning_at_the_worst_level(
        flooding: tuple[Gateway, Cell, Sensor, Sensor]) -> None:
    gateway, cell, a, b = flooding
    cell.feed(a, 22)  # yellow
    gateway.clock.advance(timedelta(minutes=5))
    cell.feed(b, 33)  # orange
    gateway.clock.advance(timedelta(minutes=5))
    cell.feed(a, 12)  # blue: the warning stays orange because of b

    assert cell.watch is not None
    assert cell.watch.id == watch_id_of(CELL, "urban_flooding")
    events = cell.events()
    assert [name for name, _ in events] == ["raised", "updated", "updated"]
    warning_ids = {e.warning_id for _, e in events}
    assert warning_ids == {f"{CELL}/urban_flooding/1"}

    w = cell.watch.active
    assert w is not None
    assert w.id == f"{CELL}/urban_flooding/1"
    assert w.level == ORANGE
    assert dict(w.sensor_levels) == {"wl-017": BLUE, "wl-018": ORANGE}
    assert w.evidence.sensor_id == "wl-017" and w.evidence.value == 12
    assert w.status == pb.WARNING_STATUS_ACTIVE
    assert from_timestamp(w.raised_at) == datetime(2024, 7, 1, 4, 0, tzinfo=UTC)
    assert from_timestamp(w.updated_at) == datetime(2024, 7, 1, 4, 10, tzinfo=UTC)

    cell.feed(b, 70)  # red
    assert cell.watch.active is not None and cell.watch.active.level == RED


def test_a_sensor_back_to_none_leaves_the_warning(
        flooding: tuple[Gateway, Cell, Sensor, Sensor]) -> None:
    _, cell, a, b = flooding
    cell.feed(a, 22)
    cell.feed(b, 55)
    cell.feed(b, 4)  # b dries up

    assert cell.watch is not None
    w = cell.watch.active
    assert w is not None
    assert dict(w.sensor_levels) == {"wl-017": YELLOW}
    assert w.level == YELLOW


def test_all_sensors_back_to_none_clear_the_warning_and_a_new_crossing_is_a_new_warning(
        flooding: tuple[Gateway, Cell, Sensor, Sensor]) -> None:
    gateway, cell, a, b = flooding
    cell.feed(a, 22)
    cell.feed(b, 35)
    cell.feed(a, 1)
    gateway.clock.advance(timedelta(hours=1))
    cell.feed(b, 0)

    assert cell.watch is not None
    assert cell.watch.active is None
    cleared = cell.watch.warning
    assert cleared.status == pb.WARNING_STATUS_CLEARED
    assert cleared.level == NONE
    assert not cleared.sensor_levels
    assert from_timestamp(cleared.cleared_at) == datetime(2024, 7, 1, 5, 0, tzinfo=UTC)
    assert [name for name, _ in cell.events()][-1] == "cleared"

    gateway.clock.advance(timedelta(hours=2))
    cell.feed(b, 11)  # the rain comes back

    second = cell.watch.active
    assert second is not None
    assert second.id == f"{CELL}/urban_flooding/2"
    assert second.level == BLUE
    assert dict(second.sensor_levels) == {"wl-018": BLUE}
    assert from_timestamp(second.raised_at) == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)
    assert [(name, e.warning_id) for name, e in cell.events()] == [
        ("raised", f"{CELL}/urban_flooding/2")]


def test_a_sensor_falling_to_none_without_a_warning_raises_nothing() -> None:
    gateway = Gateway()
    sensor = gateway.register(water_level())
    cell = Cell(gateway)
    cell.feed(sensor, 11)
    cell.feed(sensor, 1)
    cell.events()
    assert cell.watch is not None and cell.watch.active is None
    cell.watch.sensor_moved(sensor.view, NONE, gateway.reading(sensor, 0), gateway.cause(), NOW)
    assert cell.events() == []


def test_acknowledging_marks_who_and_is_done_once(
        flooding: tuple[Gateway, Cell, Sensor, Sensor]) -> None:
    gateway, cell, a, _ = flooding
    cell.feed(a, 31)
    assert cell.watch is not None
    cell.events()
    warning_id = f"{CELL}/urban_flooding/1"

    cell.watch.acknowledge(warning_id, gateway.cause("duty-officer-li"), NOW)
    cell.watch.acknowledge(warning_id, gateway.cause("duty-officer-wang"), NOW)

    assert [name for name, _ in cell.events()] == ["acknowledged"]
    w = cell.watch.active
    assert w is not None
    assert w.status == pb.WARNING_STATUS_ACKNOWLEDGED
    assert w.acknowledged_by == "duty-officer-li"


def test_acknowledging_a_cleared_warning_is_refused(
        flooding: tuple[Gateway, Cell, Sensor, Sensor]) -> None:
    gateway, cell, a, _ = flooding
    cell.feed(a, 31)
    cell.feed(a, 2)
    assert cell.watch is not None and cell.watch.active is None
    cell.events()

    with pytest.raises(RuleViolation) as refused:
        cell.watch.acknowledge(f"{CELL}/urban_flooding/1", gateway.cause(), NOW)
    assert refused.value.rule == "acknowledge-active-warning"
    assert cell.events() == []

    # Nor, once a second warning is up, may the first one be acknowledged in its place.
    cell.feed(a, 25)
    with pytest.raises(RuleViolation):
        cell.watch.acknowledge(f"{CELL}/urban_flooding/1", gateway.cause(), NOW)
    assert cell.watch.active is not None
    assert cell.watch.active.status == pb.WARNING_STATUS_ACTIVE
