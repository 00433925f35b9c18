"""Names the system knows: each service lists the hazards, unit kinds and departments it
owns, refuses a misspelt one naming the field and the closest known names, writes nothing
then, and takes a name new to the city only when the registration says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from lifeline.common.v1 import common_pb2, names_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.scenario import wait_until

pytestmark = pytest.mark.e2e
TIMEOUT = 10.0
WHERE = common_pb2.GeoPoint(lat=31.2, lon=121.4)
HAZARD, UNIT_KIND, DEPARTMENT = (names_pb2.NAME_KIND_HAZARD, names_pb2.NAME_KIND_UNIT_KIND,
                                 names_pb2.NAME_KIND_DEPARTMENT)


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    token = stack.token("registrar", *LOCAL_USER_ROLES)
    opened = {name: stack.channel(name, token) for name in ("dispatch", "monitor", "resources")}
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture
def dispatch(channels: dict[str, grpc.Channel]) -> dispatch_pb2_grpc.DispatchServiceStub:
    return dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"])


@pytest.fixture
def monitor(channels: dict[str, grpc.Channel]) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channels["monitor"])


@pytest.fixture
def resources(channels: dict[str, grpc.Channel]) -> resources_pb2_grpc.ResourcesServiceStub:
    return resources_pb2_grpc.ResourcesServiceStub(channels["resources"])


def refused(call: Callable[[], Any]) -> str:
    """The INVALID_ARGUMENT message of a refused call."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value.details() or ""


def known(stub: Any, kind: names_pb2.NameKind.ValueType = names_pb2.NAME_KIND_UNSPECIFIED
          ) -> dict[int, list[str]]:
    answer = stub.ListKnownNames(names_pb2.ListKnownNamesRequest(kind=kind), timeout=TIMEOUT)
    return {entry.kind: list(entry.names) for entry in answer.known}


def test_dispatch_knows_the_plans_names_and_refuses_a_misspelt_one(
        dispatch: dispatch_pb2_grpc.DispatchServiceStub) -> None:
    names = known(dispatch)
    assert set(names) == {HAZARD, UNIT_KIND, DEPARTMENT}
    assert {"urban_flooding", "gas_leak", "high_rise_fire"} <= set(names[HAZARD])
    assert {"fire", "police", "water", "medical"} <= set(names[DEPARTMENT])
    assert {"fire_engine", "ambulance", "police_car", "pump_truck"} <= set(names[UNIT_KIND])
    assert names[HAZARD] == sorted(set(names[HAZARD]))
    assert known(dispatch, HAZARD) == {HAZARD: names[HAZARD]}

    message = refused(lambda: dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="urban_floodin", location=WHERE), timeout=TIMEOUT))
    assert message == ("hazard: hazard 'urban_floodin' is not known; "
                       "did you mean 'urban_flooding'?")

    incident = dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=WHERE, description=f"names {uuid.uuid4().hex[:8]}"),
        timeout=TIMEOUT).incident
    message = refused(lambda: dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident.id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
        hazard_type="gas_lek", grade=incident_pb2.GRADE_IV), timeout=TIMEOUT))
    assert message.startswith("hazard_type: hazard 'gas_lek' is not known; did you mean "
                              "'gas_leak'"), message
    dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident.id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
        hazard_type="gas_leak", grade=incident_pb2.GRADE_IV), timeout=TIMEOUT)

    def answered() -> incident_pb2.Incident | None:
        """The incident once resources' answer to the declaration is on it (it arrives
        on its own, a moment later, and moves the version)."""
        shown = dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident.id),
                                     timeout=TIMEOUT).incident
        done = shown.units or shown.shortfalls or shown.material_shortfalls \
            or shown.materials_reserved
        return shown if done else None

    before = wait_until(answered, "resources' answer on the incident", 30)
    message = refused(lambda: dispatch.IssueOrder(dispatch_pb2.IssueOrderRequest(
        incident_id=incident.id, department="polise", instruction="close the street",
        tier=incident_pb2.ORDER_TIER_DISTRICT, acknowledge_within_minutes=5,
        complete_within_minutes=30), timeout=TIMEOUT))
    assert message.startswith("department: department 'polise' is not known; did you mean "
                              "'police'"), message
    after = dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident.id),
                                 timeout=TIMEOUT).incident
    assert after.version == before.version  # nothing written

    message = refused(lambda: dispatch.ListKnownNames(names_pb2.ListKnownNamesRequest(
        kind=names_pb2.NameKind.ValueType(99)), timeout=TIMEOUT))
    assert message.startswith("kind: unknown value 99")


def test_resources_refuses_polic_car_and_takes_a_new_kind_when_told(
        resources: resources_pb2_grpc.ResourcesServiceStub) -> None:
    t = uuid.uuid4().hex[:8]
    message = refused(lambda: resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
        id=f"P-{t}", kind="polic_car", department="police", home=WHERE), timeout=TIMEOUT))
    assert message == "kind: unit kind 'polic_car' is not known; did you mean 'police_car'?"
    message = refused(lambda: resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
        id=f"P-{t}", kind="police_car", department="polise", home=WHERE,
        capabilities=["rescue_tem"]), timeout=TIMEOUT))
    assert message.startswith("capabilities[0]: unit kind 'rescue_tem' is not known; "
                              "did you mean 'rescue_team'"), message
    with pytest.raises(grpc.RpcError) as missing:
        resources.GetUnit(resources_pb2.GetUnitRequest(id=f"P-{t}"), timeout=TIMEOUT)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # nothing registered

    # A city adds a kind of unit and a department: said once, known from then on.
    kind, department = f"snow_plough_{t}", f"winter_roads_{t}"
    assert kind not in known(resources, UNIT_KIND)[UNIT_KIND]
    message = refused(lambda: resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
        id=f"S-{t}-1", kind=kind, department=department, home=WHERE), timeout=TIMEOUT))
    assert message.startswith(f"kind: unit kind '{kind}' is not known")
    resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
        id=f"S-{t}-1", kind=kind, department=department, home=WHERE, new_names=True),
        timeout=TIMEOUT)
    names = known(resources)
    assert kind in names[UNIT_KIND] and department in names[DEPARTMENT]
    assert {"police_car", "ambulance"} <= set(names[UNIT_KIND])
    resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
        id=f"S-{t}-2", kind=kind, department=department, home=WHERE), timeout=TIMEOUT)

    message = refused(lambda: resources.RegisterDepot(resources_pb2.RegisterDepotRequest(
        id=f"D-{t}", name="sandbags", department="watr", position=WHERE), timeout=TIMEOUT))
    assert message.startswith("department: department 'watr' is not known; did you mean "
                              "'water'"), message


def test_monitor_refuses_a_misspelt_hazard_and_knows_the_rules_and_sensors_hazards(
        monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    t = uuid.uuid4().hex[:8]

    def sensor(sensor_id: str, hazard: str, new: bool = False
               ) -> monitor_pb2.RegisterSensorRequest:
        return monitor_pb2.RegisterSensorRequest(
            id=sensor_id, kind="water_level", hazard=hazard, location=WHERE,
            unit_of_measure="m", direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE,
            thresholds=monitor_pb2.Thresholds(blue=1, yellow=2, orange=3, red=4),
            new_names=new)

    names = known(monitor)
    assert set(names) == {HAZARD}
    # The plans' hazards and the coupled-risk rules' (heavy_rain is a rule's condition).
    assert {"urban_flooding", "gas_leak", "heavy_rain", "metro_flooding"} <= set(names[HAZARD])
    message = refused(lambda: monitor.RegisterSensor(sensor(f"n-{t}", "urban_floodin"),
                                                     timeout=TIMEOUT))
    # The closest first, then others close enough.
    assert message == ("hazard: hazard 'urban_floodin' is not known; did you mean "
                       "'urban_flooding', 'river_flooding' or 'metro_flooding'?")

    creek = f"creek_pollution_{t}"
    message = refused(lambda: monitor.RegisterSensors(monitor_pb2.RegisterSensorsRequest(
        sensors=[sensor(f"n-{t}-1", "urban_flooding"), sensor(f"n-{t}-2", creek)]),
        timeout=TIMEOUT))
    assert message.startswith(f"sensors[1].hazard: hazard '{creek}' is not known"), message
    answer = monitor.RegisterSensors(monitor_pb2.RegisterSensorsRequest(
        sensors=[sensor(f"n-{t}-1", "urban_flooding"), sensor(f"n-{t}-2", creek, new=True),
                 sensor(f"n-{t}-3", creek)]), timeout=TIMEOUT)
    assert answer.registered == 3
    assert creek in known(monitor, HAZARD)[HAZARD]
    monitor.RegisterSensor(sensor(f"n-{t}-4", creek), timeout=TIMEOUT)  # known now
    message = refused(lambda: monitor.ListKnownNames(names_pb2.ListKnownNamesRequest(
        kind=UNIT_KIND), timeout=TIMEOUT))
    assert message.startswith("kind: monitor knows hazard names")
