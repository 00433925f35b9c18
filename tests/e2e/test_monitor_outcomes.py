"""Warning outcomes against the running stack: monitor follows dispatch's incidents, a
dismissed incident marks its warning a false alarm and a declared one confirms it, and
`lifeline-monitor precision` shows the figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.incident.aggregate import incident_id_for_warning
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor.domain import grid_cell_of

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[tuple[monitor_pb2_grpc.MonitorServiceStub,
                                             dispatch_pb2_grpc.DispatchServiceStub]]:
    token = stack.token("duty-officer-li", "sensor-gateway", "operator", "commander", "viewer")
    monitor, dispatch = stack.channel("monitor", token), stack.channel("dispatch", token)
    yield (monitor_pb2_grpc.MonitorServiceStub(monitor),
           dispatch_pb2_grpc.DispatchServiceStub(dispatch))
    monitor.close()
    dispatch.close()


def cli(stack: Stack, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env["LIFELINE_MONITOR_ADDR"] = stack.address("monitor")
    env["LIFELINE_STATE_DIR"] = "/nonexistent"
    env["LIFELINE_TOKEN"] = stack.token("cli-tester", *LOCAL_USER_ROLES)
    env["LIFELINE_TLS_CA"] = str(stack.authority.ca_file)  # type: ignore[union-attr]
    done = subprocess.run([str(BIN / "lifeline-monitor"), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def raise_warning(monitor: monitor_pb2_grpc.MonitorServiceStub, hazard: str,
                  lat: float) -> tuple[pb.Warning, str]:
    sensor_id = f"outcome-{uuid.uuid4().hex[:8]}"
    monitor.RegisterSensor(pb.RegisterSensorRequest(
        id=sensor_id, kind="gas", hazard=hazard, unit_of_measure="ppm",
        location=common_pb2.GeoPoint(lat=lat, lon=121.47), direction=pb.DIRECTION_HIGHER_IS_WORSE,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=40),
        new_names=True), timeout=TIMEOUT)  # a hazard of the test's own
    answer = monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(
        readings=[pb.Reading(sensor_id=sensor_id, value=35)]), timeout=TIMEOUT)
    return answer.warnings[0], sensor_id


def incident_of(dispatch: dispatch_pb2_grpc.DispatchServiceStub, warning: pb.Warning) -> str:
    """The incident dispatch opens from the warning (over NATS), once it is there."""
    incident_id = str(incident_id_for_warning(warning.id))

    def opened() -> str | None:
        try:
            dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident_id),
                                 timeout=TIMEOUT)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return incident_id

    return wait_until(opened, f"dispatch to open an incident for {warning.id}")


def outcome_of(monitor: monitor_pb2_grpc.MonitorServiceStub, warning_id: str,
               wanted: int) -> pb.Warning:
    def shown() -> pb.Warning | None:
        warning = monitor.GetWarning(pb.GetWarningRequest(id=warning_id),
                                     timeout=TIMEOUT).warning
        return warning if warning.outcome == wanted else None

    return wait_until(shown, f"warning {warning_id} to be marked "
                             f"{pb.WarningOutcome.Name(wanted)}")  # type: ignore[arg-type]


def test_a_dismissed_incident_marks_its_warning_a_false_alarm_and_precision_shows_it(
        stack: Stack, channels: tuple[monitor_pb2_grpc.MonitorServiceStub,
                                      dispatch_pb2_grpc.DispatchServiceStub]) -> None:
    monitor, dispatch = channels
    hazard = f"gas_leak_{uuid.uuid4().hex[:6]}"
    false_alarm, false_sensor = raise_warning(monitor, hazard, 31.10)
    real, real_sensor = raise_warning(monitor, hazard, 31.30)
    assert grid_cell_of(common_pb2.GeoPoint(lat=31.10, lon=121.47)) == false_alarm.grid_cell

    dispatch.DismissIncident(dispatch_pb2.IncidentStepRequest(
        incident_id=incident_of(dispatch, false_alarm),
        action=dispatch_pb2.Action(reason="a gas meter reader's test")), timeout=TIMEOUT)
    marked = outcome_of(monitor, false_alarm.id, pb.WARNING_OUTCOME_FALSE_ALARM)
    assert marked.incident_id == str(incident_id_for_warning(false_alarm.id))

    dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident_of(dispatch, real), category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
        hazard_type="gas_leak", grade=incident_pb2.GRADE_IV), timeout=TIMEOUT)
    outcome_of(monitor, real.id, pb.WARNING_OUTCOME_CONFIRMED)
    listed = monitor.ListWarnings(pb.ListWarningsRequest(hazard=hazard), timeout=TIMEOUT)
    assert {w.id: w.outcome for w in listed.warnings} == {
        false_alarm.id: pb.WARNING_OUTCOME_FALSE_ALARM, real.id: pb.WARNING_OUTCOME_CONFIRMED}

    # The false alarm's cell: 0 of 1; the hazard: 1 of 2; each sensor its own.
    table = cli(stack, "precision", "--cell", false_alarm.grid_cell).splitlines()
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in table[1:]}
    assert rows[("all", "-")] == ["0", "1", "0%"]
    assert rows[("sensor", false_sensor)] == ["0", "1", "0%"]
    figures = json.loads(cli(stack, "precision", "--hazard", hazard, "--json"))
    assert figures["overall"] == {"key": "", "confirmed": 1, "falseAlarms": 1,
                                  "precision": 0.5}
    by_sensor = {p["key"]: p.get("precision") for p in figures["bySensor"]}
    assert by_sensor == {false_sensor: 0.0, real_sensor: 1.0}

    # A redelivered or repeated dispatch event changes nothing: the counts stay.
    again = monitor.GetPrecision(pb.GetPrecisionRequest(hazard=hazard), timeout=TIMEOUT)
    assert (again.overall.confirmed, again.overall.false_alarms) == (1, 1)


def test_precision_refuses_a_cell_that_is_not_one(
        channels: tuple[monitor_pb2_grpc.MonitorServiceStub,
                        dispatch_pb2_grpc.DispatchServiceStub]) -> None:
    monitor, _ = channels
    with pytest.raises(grpc.RpcError) as refused:
        monitor.GetPrecision(pb.GetPrecisionRequest(grid_cell="3119_12143"), timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grid_cell" in (refused.value.details() or "")
