"""Monitor's alarm rules through the running services, on field time from the readings
(the stack runs drills' observed field clock): an hour of readings chattering around a
threshold plays in seconds and raises one warning, hence one incident; a silent sensor
raises a fault addressed to its owner at its interval, cleared by its next reading; an
impossible value changes no level; a late reading does not overwrite a newer one; shelving
silences a sensor with a reason until it runs out."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.scenario import wait_until

pytestmark = pytest.mark.e2e
TIMEOUT = 10.0
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
_places = itertools.count()
L = common_pb2


class Rig:
    def __init__(self, stack: Stack) -> None:
        token = stack.token("gateway-and-duty", "sensor-gateway", "operator", "viewer")
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(stack.channel("monitor", token))
        self.dispatch = dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", token))

    def register(self, sensor_id: str, **rules: Any) -> pb.Sensor:
        place = next(_places)  # a grid cell of its own
        return self.monitor.RegisterSensor(pb.RegisterSensorRequest(
            id=sensor_id, kind="rainfall", hazard="urban_flooding", unit_of_measure="mm/h",
            location=common_pb2.GeoPoint(lat=30.5 + 0.05 * place, lon=120.5),
            thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50),
            direction=pb.DIRECTION_HIGHER_IS_WORSE, owner="waterworks-maintenance",
            rules=pb.AlarmRules(**rules)), timeout=TIMEOUT).sensor

    def read(self, sensor_id: str, value: float, minutes: float) -> pb.IngestReadingsResponse:
        return self.monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[
            pb.Reading(sensor_id=sensor_id, value=value,
                       measured_at=to_timestamp(START + timedelta(minutes=minutes)))]),
            timeout=TIMEOUT)

    def warnings(self, sensor: pb.Sensor) -> list[pb.Warning]:
        listed = self.monitor.ListWarnings(pb.ListWarningsRequest(hazard="urban_flooding",
                                                                  page=L.PageRequest(
                                                                      page_size=1000)),
                                           timeout=TIMEOUT).warnings
        return [w for w in listed if w.grid_cell == sensor.grid_cell]

    def incidents_for(self, warning_ids: set[str]) -> list[Any]:
        listed = self.dispatch.ListIncidents(dispatch_pb2.ListIncidentsRequest(
            page=L.PageRequest(page_size=1000)), timeout=TIMEOUT).incidents
        return [i for i in listed if i.warning_id in warning_ids]

    def sensor(self, sensor_id: str) -> pb.Sensor:
        return self.monitor.GetSensor(pb.GetSensorRequest(id=sensor_id), timeout=TIMEOUT).sensor


@pytest.fixture
def rig(stack: Stack) -> Rig:
    return Rig(stack)


def chatter(rig: Rig, sensor_id: str, first_minute: int = 0) -> None:
    """An hour of readings, one a minute, alternating 10.2 / 9.8 around blue (10)."""
    for minute in range(first_minute, first_minute + 60):
        rig.read(sensor_id, 10.2 if minute % 2 == 0 else 9.8, minute)


@pytest.mark.parametrize("rules", [
    {"deadband": 0.5},
    {"deadband": 0.0, "on_delay": Duration(seconds=300)},
], ids=["deadband", "on-delay-without-deadband"])
def test_a_chattering_sensor_raises_one_warning_and_one_incident(rig: Rig,
                                                                 rules: dict[str, Any]) -> None:
    sensor = rig.register(f"chatter-{'-'.join(rules)}", **rules)
    if "on_delay" in rules:
        for minute in range(0, 11):  # it rains past blue for ten minutes first
            rig.read(sensor.id, 10.5, minute)
        chatter(rig, sensor.id, 11)
    else:
        chatter(rig, sensor.id)

    warnings = rig.warnings(sensor)
    assert [w.id for w in warnings] == [f"{sensor.grid_cell}/urban_flooding/1"]
    incidents = wait_until(lambda: rig.incidents_for({warnings[0].id}),
                           "dispatch to open the incident for the warning")
    assert len(incidents) == 1


def test_with_every_rule_off_the_same_chatter_raises_a_warning_each_time(rig: Rig) -> None:
    sensor = rig.register("chatter-bare", deadband=0.0, off_delay=Duration())
    for minute in range(6):
        rig.read(sensor.id, 10.2 if minute % 2 == 0 else 9.8, minute)
    assert len(rig.warnings(sensor)) == 3  # what the rules above prevent


@pytest.mark.parametrize("call", ["IngestReadingBatch", "IngestReadings"])
def test_ten_thousand_flaps_without_rules_are_one_warning_and_other_writes_go_on(
        rig: Rig, call: str) -> None:
    """One sensor flapping between none and blue 10,000 times in one call, registered
    without rules (its kind's defaults hold the warning through the flapping): one
    warning, one incident, and registrations sent meanwhile are not held up by it."""
    sensor = rig.register(f"flap-{call}")
    readings = [pb.Reading(sensor_id=sensor.id, value=15.0 if i % 2 == 0 else 0.0,
                           measured_at=to_timestamp(START + timedelta(seconds=i)))
                for i in range(10_000)]

    def flap() -> None:
        if call == "IngestReadingBatch":
            rig.monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=readings),
                                           timeout=60)
        else:
            rig.monitor.IngestReadings(iter(pb.IngestReadingsRequest(reading=r)
                                            for r in readings), timeout=60)

    waits: list[float] = []
    with ThreadPoolExecutor(1) as caller:
        flapping = caller.submit(flap)
        while not waits or not flapping.done():
            started = time.monotonic()
            rig.register(f"beside-{call}-{len(waits)}")
            waits.append(time.monotonic() - started)
        flapping.result()
    # Under a ceiling that only a registration queued behind the whole batch would reach
    # (the figures themselves are bench/ingest.py's).
    assert max(waits) < 5.0, waits

    warnings = rig.warnings(sensor)
    assert len(warnings) == 1, [w.id for w in warnings]
    incidents = wait_until(lambda: rig.incidents_for({warnings[0].id}),
                           "dispatch to open the incident for the warning")
    assert len(incidents) == 1


def test_a_silent_sensor_raises_a_fault_at_its_interval_and_clears_on_its_next_reading(
        rig: Rig) -> None:
    silent = rig.register("fall-silent", expected_interval=Duration(seconds=600))
    ticker = rig.register("keeps-ticking")
    rig.read(silent.id, 3, 0)
    for minute in range(1, 10):
        assert not rig.read(ticker.id, 3, minute).faults
    answer = rig.read(ticker.id, 3, 10)  # field time reaches the silent one's interval
    assert [(f.sensor_id, f.kind, f.active) for f in answer.faults] == [
        (silent.id, pb.FAULT_KIND_STALE, True)]
    assert not answer.warnings  # a fault, not a hazard warning
    faults = rig.sensor(silent.id).faults
    assert [f.kind for f in faults] == [pb.FAULT_KIND_STALE]
    assert rig.sensor(silent.id).owner == "waterworks-maintenance"

    answer = rig.read(silent.id, 4, 12)
    assert [(f.sensor_id, f.kind, f.active) for f in answer.faults] == [
        (silent.id, pb.FAULT_KIND_STALE, False)]
    assert not rig.sensor(silent.id).faults


def test_an_impossible_value_is_bad_quality_and_changes_no_level(rig: Rig) -> None:
    sensor = rig.register("gauge-bad")
    rig.read(sensor.id, 35, 0)
    assert rig.sensor(sensor.id).level == L.WARNING_LEVEL_ORANGE
    for value, minute in ((1e9, 1), (-1_000_000, 2)):
        answer = rig.read(sensor.id, value, minute)
        assert answer.bad_quality == 1 and not answer.warnings
    seen = rig.sensor(sensor.id)
    assert seen.level == L.WARNING_LEVEL_ORANGE
    assert [f.kind for f in seen.faults] == [pb.FAULT_KIND_BAD_QUALITY]
    assert [w.level for w in rig.warnings(sensor)] == [L.WARNING_LEVEL_ORANGE]


def test_a_late_reading_is_kept_but_does_not_overwrite_the_newer_level(rig: Rig) -> None:
    sensor = rig.register("gauge-late")
    rig.read(sensor.id, 55, 10)
    answer = rig.read(sensor.id, 2, 5)
    assert answer.late == 1 and not answer.warnings
    assert rig.sensor(sensor.id).level == L.WARNING_LEVEL_RED
    assert [w.level for w in rig.warnings(sensor)] == [L.WARNING_LEVEL_RED]


def test_shelving_silences_a_sensor_with_a_reason_until_it_runs_out(rig: Rig) -> None:
    sensor = rig.register("gauge-shelved")
    rig.read(sensor.id, 25, 0)
    shelved = rig.monitor.ShelveSensor(pb.ShelveSensorRequest(
        id=sensor.id, duration=Duration(seconds=3600), reason="chattering after a repair",
        occurred_at=to_timestamp(START + timedelta(minutes=1))), timeout=TIMEOUT).sensor
    assert shelved.shelving.reason == "chattering after a repair"
    assert shelved.shelving.by == "gateway-and-duty"
    assert [w.status for w in rig.warnings(sensor)] == [pb.WARNING_STATUS_CLEARED]
    rig.read(sensor.id, 60, 30)  # silenced: no new warning
    assert len(rig.warnings(sensor)) == 1
    rig.read(sensor.id, 60, 62)  # the hour ran out: it counts again
    active = [w for w in rig.warnings(sensor) if w.status == pb.WARNING_STATUS_ACTIVE]
    assert [w.level for w in active] == [L.WARNING_LEVEL_RED]
    assert not rig.sensor(sensor.id).HasField("shelving")

    with pytest.raises(grpc.RpcError) as refused:
        rig.monitor.ShelveSensor(pb.ShelveSensorRequest(
            id=sensor.id, duration=Duration(seconds=3 * 86400), reason="forever"),
            timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
