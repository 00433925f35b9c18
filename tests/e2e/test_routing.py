"""Resources sends the unit that arrives first, over the city's road graph, and says why:
with the Xujiahui underpass closed (flooded), the pump truck from north of the rail line is
sent rather than the nearer one south of it, whose way round takes six minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import event_of
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.review.v1 import review_pb2, review_pb2_grpc
from lifeline.scenario import wait_until

from tests.conftest import StackFactory

ROADS = Path(__file__).resolve().parents[2] / "roads" / "xujiahui_demo.geojson"
UNDERPASS = common_pb2.GeoPoint(lat=31.1960, lon=121.4376)


def fleet_office(stack: Stack, *pumps: tuple[str, float, float]
                 ) -> resources_pb2_grpc.ResourcesServiceStub:
    """The fleet office's client, after registering pump trucks (id, lat, lon)."""
    admin = resources_pb2_grpc.ResourcesServiceStub(
        stack.channel("resources", stack.token("fleet-office", "admin")))
    for unit_id, lat, lon in pumps:
        admin.RegisterUnit(resources_pb2.RegisterUnitRequest(
            id=unit_id, kind="pump_truck", department="water",
            home=common_pb2.GeoPoint(lat=lat, lon=lon)))
    return admin


def test_the_unit_behind_a_closed_underpass_is_passed_over_for_one_that_arrives_first(
        make_stack: StackFactory) -> None:
    stack = make_stack({"LIFELINE_ROADS": str(ROADS)})
    admin = fleet_office(stack, ("pump-south", 31.1884, 121.4420),
                         ("pump-north", 31.2080, 121.4376))
    officer = stack.token("officer-li", "operator", "commander")
    roads = resources_pb2_grpc.ResourcesServiceStub(stack.channel("resources", officer))
    with pytest.raises(grpc.RpcError) as unknown:
        roads.CloseRoad(resources_pb2.CloseRoadRequest(segment_id="nowhere", reason="x"))
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    closed = roads.CloseRoad(resources_pb2.CloseRoadRequest(
        segment_id="xjh-underpass", reason="flooded, 0.6 m of water")).segment
    assert closed.closed and closed.reason == "flooded, 0.6 m of water"

    dispatch = dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", officer))
    incident = dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="urban_flooding", location=UNDERPASS,
        description="car stuck in the flooded underpass")).incident
    dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident.id, category=incident_pb2.CATEGORY_NATURAL_DISASTER,
        hazard_type="urban_flooding", grade=incident_pb2.GRADE_IV))

    def assigned() -> incident_pb2.Incident | None:
        found = dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(
            incident_id=incident.id)).incident
        return found if any(u.unit_kind == "pump_truck" for u in found.units) else None

    final = wait_until(assigned, "a pump truck assigned", timeout=20)
    assert [u.unit_id for u in final.units if u.unit_kind == "pump_truck"] == ["pump-north"]

    # The answer says why: the nearer truck's way round takes longer.
    history = [event_of(e) for e in history_of(stack, officer, incident.id)]
    request_id = next(e.request_id for f, e in history if f == "resources_requested")
    answer = roads.GetRequest(resources_pb2.GetRequestRequest(id=request_id)).answer
    pump = next(a for a in answer.assignments if a.unit_kind == "pump_truck")
    assert (pump.unit_id, pump.rank, pump.origin) == ("pump-north", 1, "station")
    assert pump.basis == "road network 'xujiahui-demo' (6 segments, 1 closed)"
    assert 100 < pump.eta_seconds < 140 and pump.distance_km == pytest.approx(1.33, abs=0.01)
    passed = {p.unit_id: p.reason for p in pump.passed_over}
    assert passed["pump-south"].startswith("arrives later: 6.0 min against 2.0 min")
    explained = resources_cli(stack, "explain", request_id)
    assert explained.returncode == 0, explained.stderr
    assert "pump-north" in explained.stdout and "not pump-south" in explained.stdout
    assert "1 closed" in explained.stdout

    # Reopened, the nearer truck is the one recommended again.
    roads.ReopenRoad(resources_pb2.ReopenRoadRequest(segment_id="xjh-underpass"))
    admin.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
        id="pump-north", status=common_pb2.UNIT_STATUS_AVAILABLE))
    again = roads.RecommendUnits(resources_pb2.RecommendUnitsRequest(
        location=UNDERPASS, needs=[resources_pb2.UnitNeed(unit_kind="pump_truck", count=1)]))
    assert [a.unit_id for a in again.recommended] == ["pump-south"]
    assert again.recommended[0].basis == "road network 'xujiahui-demo' (6 segments)"

    # A truck on the road is ranked from where it reports it is (AVL), not its station.
    avl = resources_pb2_grpc.ResourcesServiceStub(
        stack.channel("resources", stack.token("avl-feed", "avl-gateway")))
    reported = avl.ReportPositions(iter([resources_pb2.ReportPositionsRequest(reports=[
        resources_pb2.PositionReport(unit_id="pump-north", position=UNDERPASS),
        resources_pb2.PositionReport(unit_id="pump-ghost", position=UNDERPASS)])]))
    assert (reported.accepted, list(reported.unknown_units)) == (1, ["pump-ghost"])
    on_road = roads.RecommendUnits(resources_pb2.RecommendUnitsRequest(
        location=UNDERPASS, needs=[resources_pb2.UnitNeed(unit_kind="pump_truck", count=1)]))
    assert [(a.unit_id, a.origin) for a in on_road.recommended] == [("pump-north", "position")]
    shown = roads.GetUnit(resources_pb2.GetUnitRequest(id="pump-north")).unit
    assert (shown.position.lat, shown.position.lon) == (UNDERPASS.lat, UNDERPASS.lon)


def resources_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIFELINE_STATE_DIR": str(stack.state_dir)}
    return subprocess.run([str(Path(sys.executable).parent / "lifeline-resources"), "--addr",
                           stack.address("resources"), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def history_of(stack: Stack, token: str, incident_id: str) -> list[incident_pb2.IncidentEvent]:
    review = review_pb2_grpc.ReviewServiceStub(stack.channel("review", token))

    def complete() -> list[incident_pb2.IncidentEvent] | None:
        try:
            events = list(review.GetIncidentHistory(
                review_pb2.GetIncidentHistoryRequest(incident_id=incident_id)))
        except grpc.RpcError:
            return None
        return events if any(event_of(e)[0] == "unit_assigned" for e in events) else None

    return wait_until(complete, "the incident's history in review", timeout=20)


COVERAGE = Path(__file__).resolve().parents[2] / "coverage" / "xuhui.toml"


def test_sending_the_last_pump_truck_of_a_district_suggests_a_move_up_that_closes_the_gap(
        make_stack: StackFactory) -> None:
    stack = make_stack({"LIFELINE_COVERAGE": str(COVERAGE)})
    admin = fleet_office(stack, ("pump-xjh", 31.1970, 121.4380),  # covers Xujiahui
                         ("pump-far", 31.2900, 121.5200))  # 13 km out: half an hour

    def pumps() -> resources_pb2.Coverage:
        listed = admin.ListCoverage(resources_pb2.ListCoverageRequest()).coverage
        return next(c for c in listed if c.requirement_id == "xujiahui-pump")

    before = pumps()
    assert (before.covering, before.minimum, before.gap) == (1, 1, False)

    officer = stack.token("officer-li", "operator", "commander")
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", officer))
    incident = dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="urban_flooding", location=UNDERPASS, description="underpass flooding")).incident
    dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident.id, category=incident_pb2.CATEGORY_NATURAL_DISASTER,
        hazard_type="urban_flooding", grade=incident_pb2.GRADE_IV))

    gap = wait_until(lambda: (c := pumps()).move_up.id and c, "a move-up suggested", 20)
    assert gap.gap and gap.covering == 0
    move = gap.move_up
    assert (move.unit_id, move.status) == ("pump-far", resources_pb2.MOVE_UP_STATUS_SUGGESTED)
    assert 25 * 60 < move.eta_seconds < 35 * 60

    listed = resources_cli(stack, "coverage", "--gaps")
    assert listed.returncode == 0, listed.stderr
    assert "xujiahui-pump" in listed.stdout and move.id in listed.stdout
    env = {**os.environ, "LIFELINE_STATE_DIR": str(stack.state_dir),
           "LIFELINE_TOKEN": officer}
    accepted = subprocess.run(
        [str(Path(sys.executable).parent / "lifeline-resources"), "--addr",
         stack.address("resources"), "accept-moveup", move.id], capture_output=True,
        text=True, timeout=60, env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted" in accepted.stdout

    moved = admin.GetUnit(resources_pb2.GetUnitRequest(id="pump-far")).unit
    assert (moved.home.lat, moved.home.lon) == (gap.at.lat, gap.at.lon)
    after = pumps()
    assert (after.covering, after.gap) == (1, False)
    with pytest.raises(grpc.RpcError) as again:
        admin.AcceptMoveUp(resources_pb2.MoveUpDecisionRequest(move_up_id=move.id))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_flooding_warning_at_the_underpass_closes_it_and_its_clearing_reopens_it(
        make_stack: StackFactory) -> None:
    stack = make_stack({"LIFELINE_ROADS": str(ROADS)})
    admin = fleet_office(stack, ("pump-south", 31.1884, 121.4420),
                         ("pump-north", 31.2080, 121.4376))
    gateway = monitor_pb2_grpc.MonitorServiceStub(
        stack.channel("monitor", stack.token("gauges", "sensor-gateway")))
    gateway.RegisterSensor(monitor_pb2.RegisterSensorRequest(
        id="level-underpass", kind="water_level", hazard="urban_flooding",
        unit_of_measure="m", location=UNDERPASS,
        thresholds=monitor_pb2.Thresholds(blue=0.10, yellow=0.25, orange=0.40, red=0.60),
        direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE,
        rules=monitor_pb2.AlarmRules(off_delay=Duration())))  # one reading clears

    def read(value: float) -> None:
        gateway.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(readings=[
            monitor_pb2.Reading(sensor_id="level-underpass", value=value)]))

    def first_pump() -> resources_pb2.Assignment:
        return admin.RecommendUnits(resources_pb2.RecommendUnitsRequest(
            location=UNDERPASS, needs=[resources_pb2.UnitNeed(unit_kind="pump_truck",
                                                              count=1)])).recommended[0]

    read(0.3)  # yellow: not deep enough to close it
    read(0.62)  # red
    closed = wait_until(lambda: (a := first_pump()).unit_id == "pump-north" and a,
                        "the underpass closed by the warning", timeout=20)
    assert "1 closed" in closed.basis
    read(0.0)  # the water is gone: the warning clears, the underpass reopens
    wait_until(lambda: first_pump().unit_id == "pump-south", "the underpass reopened",
               timeout=20)
