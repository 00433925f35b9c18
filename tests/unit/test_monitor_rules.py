"""Monitor's alarm rules as operators know them (ISA-18.2, OPC UA Part 9, Prometheus `for`):
deadband, on-delay, off-delay, rate of change, valid range, late readings, stale data and
shelving, played in field time (no clock, no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, event_of, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor.alarms import effective_rules, rules_of
from lifeline_monitor.domain import HazardWatch, Sensor
from lifeline_monitor.engine import Engine, Step
from lifeline_monitor.rules import BLUE, NONE, ORANGE, RED, YELLOW, Rules, SensorState

MIN = 60.0
RAIN = (10.0, 20.0, 30.0, 50.0)


def play(rules: Rules, readings: list[tuple[float, float]]) -> list[int]:
    """The level after each (minutes, value) reading."""
    state = SensorState(rules)
    levels = []
    for minutes, value in readings:
        if state.steady(value):
            state.last_at = minutes * MIN
        else:
            state.observe(value, minutes * MIN)
        levels.append(state.level)
    return levels


CHATTER = [(m, 10.2 if m % 2 == 0 else 9.8) for m in range(60)]

CASES: list[tuple[str, Rules, list[tuple[float, float]], list[int]]] = [
    ("thresholds alone follow the value", Rules(RAIN),
     [(0, 5), (1, 12), (2, 25), (3, 9)], [NONE, BLUE, YELLOW, NONE]),
    ("deadband holds a level the value chatters around", Rules(RAIN, deadband=1),
     [(0, 10.2), (1, 9.8), (2, 10.2), (3, 9.1), (4, 8.9)], [BLUE, BLUE, BLUE, BLUE, NONE]),
    ("deadband holds each level it passes on the way down", Rules(RAIN, deadband=1),
     [(0, 35), (1, 29.5), (2, 28.9), (3, 19.5), (4, 12)], [ORANGE, ORANGE, YELLOW, YELLOW,
                                                           BLUE]),
    ("deadband never delays a rise", Rules(RAIN, deadband=5),
     [(0, 9), (1, 10), (2, 55)], [NONE, BLUE, RED]),
    ("lower is worse mirrors the deadband",
     Rules((5.0, 4.0, 3.0, 2.0), higher_is_worse=False, deadband=0.2),
     [(0, 4.9), (1, 5.1), (2, 5.3), (3, 2.5)], [BLUE, BLUE, NONE, ORANGE]),
    ("on-delay raises only after the value stood past the threshold that long",
     Rules(RAIN, on_delay=10 * MIN),
     [(0, 12), (5, 12), (9, 12), (10, 12), (11, 25), (20, 25), (21, 25)],
     [NONE, NONE, NONE, BLUE, BLUE, BLUE, YELLOW]),
    ("on-delay restarts when the value falls back", Rules(RAIN, on_delay=10 * MIN),
     [(0, 12), (8, 9), (9, 12), (18, 12), (19, 12)], [NONE, NONE, NONE, NONE, BLUE]),
    ("on-delay with a big jump takes the highest level that stood long enough",
     Rules(RAIN, on_delay=5 * MIN),
     [(0, 12), (4, 60), (5, 60), (9, 60)], [NONE, NONE, BLUE, RED]),
    ("off-delay keeps a level until the value stayed below that long",
     Rules(RAIN, off_delay=15 * MIN),
     [(0, 25), (1, 5), (10, 5), (16, 5)], [YELLOW, YELLOW, YELLOW, NONE]),
    ("off-delay restarts when the value comes back", Rules(RAIN, off_delay=15 * MIN),
     [(0, 25), (1, 5), (10, 25), (20, 5), (34, 5), (35, 5)],
     [YELLOW, YELLOW, YELLOW, YELLOW, YELLOW, NONE]),
    ("rate of change raises a level whatever the value",
     Rules((1.0, 2.0, 3.0, 4.0), rate=((0.3, ORANGE),)),
     [(0, 0.10), (5, 0.13), (10, 0.16), (15, 0.19), (60, 0.19), (120, 0.19)],
     [NONE, NONE, ORANGE, ORANGE, NONE, NONE]),
    ("rate of change counts only worsening",
     Rules((5.0, 4.0, 3.0, 2.0), higher_is_worse=False, rate=((1.0, YELLOW),)),
     [(0, 8.0), (10, 7.8), (20, 7.5), (30, 9.0)], [NONE, YELLOW, YELLOW, NONE]),
]


@pytest.mark.parametrize(("rules", "readings", "levels"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rule_semantics(rules: Rules, readings: list[tuple[float, float]],
                        levels: list[int]) -> None:
    assert play(rules, readings) == levels


def test_a_chattering_value_with_a_deadband_moves_once_in_an_hour() -> None:
    levels = play(Rules(RAIN, deadband=0.5), CHATTER)
    assert sum(1 for a, b in zip([NONE, *levels], levels, strict=False) if a != b) == 1


def test_a_chattering_value_with_an_on_delay_never_rises() -> None:
    assert set(play(Rules(RAIN, on_delay=2 * MIN), CHATTER)) == {NONE}


def test_without_rules_the_same_value_chatters() -> None:
    levels = play(Rules(RAIN), CHATTER)
    assert sum(1 for a, b in zip([NONE, *levels], levels, strict=False) if a != b) == 60


# ---- rules at registration: the sensor's own, else its kind's ----


def request(**rules: Any) -> pb.RegisterSensorRequest:
    return pb.RegisterSensorRequest(
        id="rain-1", kind="rainfall", hazard="urban_flooding", unit_of_measure="mm/h",
        location=common_pb2.GeoPoint(lat=31.2, lon=121.4), direction=pb.DIRECTION_HIGHER_IS_WORSE,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50),
        rules=pb.AlarmRules(**rules))


def test_kind_defaults_fill_what_a_registration_leaves_out() -> None:
    rules = rules_of(pb.Sensor(thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50),
                               rules=effective_rules(request())))
    assert (rules.valid_min, rules.valid_max) == (0, 500)
    assert rules.deadband == 1.0
    assert rules.expected_interval == 0
    assert (rules.on_delay, rules.off_delay) == (0, 300)


def test_a_kind_not_listed_still_gets_the_off_delay_of_every_kind() -> None:
    unknown = request()
    unknown.kind = "tide_gauge"
    rules = rules_of(pb.Sensor(thresholds=unknown.thresholds, rules=effective_rules(unknown)))
    assert rules.off_delay == 300 and rules.deadband == 0


def test_a_registration_overrides_its_kind() -> None:
    given = effective_rules(request(deadband=0, valid_range=pb.ValidRange(min=-1, max=900),
                                    on_delay=Duration(seconds=300),
                                    expected_interval=Duration(seconds=600)))
    rules = rules_of(pb.Sensor(thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50),
                               rules=given))
    assert (rules.deadband, rules.on_delay, rules.expected_interval) == (0, 300, 600)
    assert (rules.valid_min, rules.valid_max) == (-1, 900)


@pytest.mark.parametrize(("rules", "field"), [
    ({"deadband": -1}, "rules.deadband"),
    ({"on_delay": Duration(seconds=-5)}, "rules.on_delay"),
    ({"off_delay": Duration(seconds=10**7)}, "rules.off_delay"),
    ({"expected_interval": Duration(seconds=1)}, "rules.expected_interval"),
    ({"valid_range": pb.ValidRange(min=5, max=5)}, "rules.valid_range"),
    ({"rate": [pb.RateLimit(per_hour=0, level=common_pb2.WARNING_LEVEL_RED)]},
     "rules.rate[0].per_hour"),
    ({"rate": [pb.RateLimit(per_hour=1, level=common_pb2.WARNING_LEVEL_NONE)]},
     "rules.rate[0].level"),
])
def test_bad_rules_are_refused_naming_the_field(rules: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        effective_rules(request(**rules))
    assert refused.value.field == field


# ---- the engine: valid range, late readings, stale data, shelving ----

T0 = datetime(2026, 7, 20, 6, 0, tzinfo=UTC)


class Rig:
    """An engine in drill mode (field time is what the readings say), one watch per cell."""

    def __init__(self) -> None:
        self.engine = Engine(observed=True, responsible=lambda cell, hazard: pb.Responsible())
        self.events: list[tuple[str, Any]] = []

    def register(self, sensor_id: str, **rules: Any) -> None:
        req = request(**rules)
        req.id, req.grid_cell = sensor_id, "cell-1"
        sensor = Sensor.register(req, Cause(actor="admin", occurred_at=T0), T0)
        sensor.collect_events()
        self.engine.add(sensor, Step())

    def read(self, *readings: tuple[str, float, float]) -> Step:
        step = Step()
        batch = [pb.Reading(sensor_id=s, value=v,
                            measured_at=to_timestamp(T0 + timedelta(minutes=m)))
                 for s, v, m in readings]
        self.engine.ingest(batch, step, T0)
        self.engine.expire(T0, step)
        for aggregate in self.engine.flush(step, "gateway", T0):
            for event in aggregate.collect_events():
                self.events.append(event_of(type(aggregate).decode(event.payload)))
        return step

    def names(self) -> list[str]:
        names = [name for name, _ in self.events]
        self.events.clear()
        return names


def test_an_impossible_value_is_a_bad_quality_fault_and_moves_no_level() -> None:
    rig = Rig()
    rig.register("rain-1")
    rig.read(("rain-1", 35, 0))
    rig.names()
    step = rig.read(("rain-1", 1e9, 1), ("rain-1", -1_000_000, 2))
    assert step.bad == 2
    assert rig.names() == ["fault_raised"]  # once, however many bad readings
    assert rig.engine.sensors["rain-1"].state.level == ORANGE
    rig.read(("rain-1", 36, 3))
    assert rig.names() == ["fault_cleared"]


def test_a_late_reading_is_kept_but_does_not_overwrite_the_newer_level() -> None:
    rig = Rig()
    rig.register("rain-1", deadband=0)
    rig.read(("rain-1", 55, 10))
    rig.names()
    step = rig.read(("rain-1", 2, 5))
    assert step.late_count == {"rain-1": 1}
    assert rig.names() == ["readings_late"]
    assert rig.engine.sensors["rain-1"].state.level == RED


def test_a_silent_sensor_raises_a_fault_at_its_interval_and_its_next_reading_clears_it() -> None:
    rig = Rig()
    rig.register("quiet", expected_interval=Duration(seconds=600))
    rig.register("chatty")
    rig.read(("quiet", 1, 0), ("chatty", 1, 0))
    rig.read(("chatty", 1, 9))
    assert rig.names() == []
    step = rig.read(("chatty", 1, 10))
    assert [(f.sensor_id, f.kind, f.active) for f in step.faults] == [
        ("quiet", pb.FAULT_KIND_STALE, True)]
    assert rig.names() == ["fault_raised"]
    rig.read(("chatty", 1, 30))
    assert rig.names() == []  # raised once
    step = rig.read(("quiet", 2, 31))
    assert [(f.kind, f.active) for f in step.faults] == [(pb.FAULT_KIND_STALE, False)]
    assert rig.names() == ["fault_cleared"]


def test_several_sensors_in_one_cell_are_one_warning_and_a_shelved_one_leaves_it() -> None:
    rig = Rig()
    rig.register("a", deadband=0)
    rig.register("b", deadband=0)
    rig.read(("a", 12, 0), ("b", 33, 0))
    assert rig.names() == ["raised"]  # one event for both
    watch = next(iter(rig.engine.watches.values()))
    assert isinstance(watch, HazardWatch) and watch.active is not None
    assert dict(watch.active.sensor_levels) == {"a": BLUE, "b": ORANGE}
    step = Step()
    rig.engine.shelve(rig.engine.sensors["b"], (T0 + timedelta(hours=2)).timestamp(),
                      Cause(actor="duty-li", occurred_at=T0, reason="chattering"), step)
    for aggregate in rig.engine.flush(step, "duty-li", T0):
        aggregate.collect_events()
    assert dict(watch.active.sensor_levels) == {"a": BLUE}
    rig.read(("b", 60, 30))
    assert dict(watch.active.sensor_levels) == {"a": BLUE}  # silenced
    rig.read(("a", 12, 121))  # two hours on: the shelving ran out
    assert dict(watch.active.sensor_levels) == {"a": BLUE, "b": RED}
    assert YELLOW not in watch.active.sensor_levels.values()


def test_a_warning_raised_and_cleared_within_one_call_is_still_recorded() -> None:
    rig = Rig()
    rig.register("a", deadband=0, off_delay=Duration())  # no off-delay: one reading clears
    rig.read(("a", 55, 0), ("a", 1, 1), ("a", 12, 2))
    assert rig.names() == ["raised", "cleared", "raised"]


@pytest.mark.parametrize("spacing", [0, 1, 60, 3600], ids=lambda s: f"{s}s apart")
def test_a_sensor_flapping_across_blue_without_rules_is_one_warning(spacing: int) -> None:
    """10,000 readings between none and blue, however far apart in field time (0: all at
    the same instant): the kind's default off-delay holds the warning raised by the first
    crossing, so the flapping is one situation, not five thousand."""
    rig = Rig()
    rig.register("flap")
    step = Step()
    batch = [pb.Reading(sensor_id="flap", value=15.0 if i % 2 == 0 else 0.0,
                        measured_at=to_timestamp(T0 + timedelta(seconds=i * spacing)))
             for i in range(10_000)]
    rig.engine.ingest(batch, step, T0)
    for aggregate in rig.engine.flush(step, "gateway", T0):
        for event in aggregate.collect_events():
            rig.events.append(event_of(type(aggregate).decode(event.payload)))
    assert rig.names() == ["raised"]
    # Once the value stays below for the off-delay, the warning clears.
    rig.read(("flap", 0.0, 10_000 * spacing / 60 + 1), ("flap", 0.0, 10_000 * spacing / 60 + 7))
    assert rig.names() == ["cleared"]
