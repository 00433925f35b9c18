"""Coupled risks against the running stack: with the demo city's grid loaded, red rain on
the Xujiahui metro station and an orange creek in the next H3 cell raise a metro_flooding
warning naming both; dispatch opens an incident for it as for any warning; when the creek
falls back the compound warning is cleared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.incident.aggregate import incident_id_for_warning
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor import grid

from tests.e2e.test_monitor_outcomes import cli

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0
XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)
PUHUITANG = common_pb2.GeoPoint(lat=31.1905, lon=121.4330)


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[tuple[monitor_pb2_grpc.MonitorServiceStub,
                                        dispatch_pb2_grpc.DispatchServiceStub]]:
    token = stack.token("city-ops", "admin", "sensor-gateway", "viewer")
    monitor, dispatch = stack.channel("monitor", token), stack.channel("dispatch", token)
    yield (monitor_pb2_grpc.MonitorServiceStub(monitor),
           dispatch_pb2_grpc.DispatchServiceStub(dispatch))
    monitor.close()
    dispatch.close()


def test_a_coupled_risk_is_raised_from_neighbouring_cells_and_cleared_with_them(
        api: tuple[monitor_pb2_grpc.MonitorServiceStub,
                   dispatch_pb2_grpc.DispatchServiceStub]) -> None:
    monitor, dispatch = api
    loaded = monitor.LoadGrid(grid.read_grid_file(ROOT / "grids" / "xuhui.toml"),
                              timeout=TIMEOUT)
    assert (loaded.districts_changed, loaded.cells_changed, loaded.resolution) == (1, 7, 8)
    cell = monitor.GetCell(pb.GetCellRequest(location=XUJIAHUI), timeout=TIMEOUT).cell
    assert "metro_station" in cell.assets and cell.district_detail.id == "xuhui"

    for sensor_id, kind, hazard, where, unit, thresholds in (
            ("rain-xjh", "rainfall", "heavy_rain", XUJIAHUI, "mm/h", (10, 20, 30, 50)),
            ("creek-phc", "river_level", "river_flooding", PUHUITANG, "m", (2, 2.5, 3, 3.5))):
        monitor.RegisterSensor(pb.RegisterSensorRequest(
            id=sensor_id, kind=kind, hazard=hazard, location=where, unit_of_measure=unit,
            direction=pb.DIRECTION_HIGHER_IS_WORSE, thresholds=pb.Thresholds(
                blue=thresholds[0], yellow=thresholds[1], orange=thresholds[2],
                red=thresholds[3]),
            rules=pb.AlarmRules(off_delay=Duration())), timeout=TIMEOUT)  # one reading clears

    def read(sensor_id: str, value: float) -> pb.Warning:
        return monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[
            pb.Reading(sensor_id=sensor_id, value=value)]), timeout=TIMEOUT).warnings[0]

    rain = read("rain-xjh", 62)  # red on the station
    creek = read("creek-phc", 3.2)  # orange one ring away
    assert rain.responsible.grid_officer == "wang-fang"
    assert creek.responsible.departments == ["water", "police"]
    compound_id = f"{cell.cell}/metro_flooding/1"

    def compound(status: int) -> pb.Warning | None:
        try:
            found = monitor.GetWarning(pb.GetWarningRequest(id=compound_id),
                                       timeout=TIMEOUT).warning
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return found if found.status == status else None

    raised = wait_until(lambda: compound(pb.WARNING_STATUS_ACTIVE),
                        "the metro_flooding warning to be raised")
    assert raised.level == common_pb2.WARNING_LEVEL_ORANGE
    assert raised.coupled_rule == "metro_flooding"
    assert sorted(raised.sources) == sorted([rain.id, creek.id])
    assert raised.responsible.departments == ["metro", "water", "police", "fire"]

    def incident() -> object | None:
        try:
            return dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(
                incident_id=str(incident_id_for_warning(compound_id))), timeout=TIMEOUT)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    wait_until(incident, "dispatch to open an incident for the compound warning")

    monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[  # the creek falls back
        pb.Reading(sensor_id="creek-phc", value=0.4)]), timeout=TIMEOUT)
    cleared = wait_until(lambda: compound(pb.WARNING_STATUS_CLEARED),
                         "the metro_flooding warning to be cleared")
    assert cleared.level == common_pb2.WARNING_LEVEL_NONE


def test_the_grid_loads_and_shows_through_the_cli(stack: Stack) -> None:
    loaded = json.loads(cli(stack, "load-grid", str(ROOT / "grids" / "xuhui.toml"), "--json"))
    assert loaded["resolution"] == 8
    shown = json.loads(cli(stack, "cell", "--lat", "31.1955", "--lon", "121.4373", "--json"))
    assert shown["cell"] == grid.cell_of(XUJIAHUI)
    assert shown["gridOfficer"] == "wang-fang"
    assert shown["districtDetail"]["dutyOfficer"] == "xuhui-duty-officer"
