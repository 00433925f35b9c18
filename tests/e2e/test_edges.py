"""The edges of the four services: bad input gets a clear error naming the field and changes
nothing; unknown ids are NOT_FOUND; repeats are ALREADY_EXISTS; illegal lifecycle steps are
FAILED_PRECONDITION naming the rule and write nothing; every service answers health and
reflection; a repeated warning stays one incident."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.incident.aggregate import incident_id_for_warning
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.review.v1 import review_pb2, review_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor.domain import grid_cell_of

pytestmark = pytest.mark.e2e

FULL_NAMES = {
    "monitor": "lifeline.monitor.v1.MonitorService",
    "dispatch": "lifeline.dispatch.v1.DispatchService",
    "resources": "lifeline.resources.v1.ResourcesService",
    "review": "lifeline.review.v1.ReviewService",
}
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@dataclass
class Clients:
    channels: dict[str, grpc.Channel]
    monitor: monitor_pb2_grpc.MonitorServiceStub
    dispatch: dispatch_pb2_grpc.DispatchServiceStub
    resources: resources_pb2_grpc.ResourcesServiceStub
    review: review_pb2_grpc.ReviewServiceStub


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Clients]:
    # One caller holding every role but department: these tests are about input, not roles
    # (tests/e2e/test_identity.py is about roles).
    token = stack.token("edge-tester", *LOCAL_USER_ROLES)
    channels = {name: stack.channel(name, token) for name in stack.SERVICES}
    yield Clients(channels,
                  monitor_pb2_grpc.MonitorServiceStub(channels["monitor"]),
                  dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"]),
                  resources_pb2_grpc.ResourcesServiceStub(channels["resources"]),
                  review_pb2_grpc.ReviewServiceStub(channels["review"]))
    for channel in channels.values():
        channel.close()


def tag() -> str:
    return uuid.uuid4().hex[:8]


def refused(call: Callable[[], Any], code: grpc.StatusCode, *names: str) -> str:
    """Run call, expect it to fail with code and a message naming every one of names."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ByteSize"):
            list(result)  # a server stream raises only when iterated
    error = caught.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    message = error.details() or ""
    for name in names:
        assert name in message, f"{name!r} not named in {message!r}"
    return message


def cell_for(t: str) -> str:
    """A grid cell of the test's own: the H3 cell of a point picked by the tag."""
    n = int(t, 16)
    return grid_cell_of(common_pb2.GeoPoint(lat=-60 + (n % 100_000) * 0.001,
                                            lon=-170 + (n // 100_000 % 300_000) * 0.001))


def sensor_request(sensor_id: str, hazard: str = "urban_flooding", cell: str = "",
                   lat: float = 31.2, **changes: Any) -> monitor_pb2.RegisterSensorRequest:
    request = monitor_pb2.RegisterSensorRequest(
        id=sensor_id, kind="water_level", hazard=hazard,
        location=common_pb2.GeoPoint(lat=lat, lon=121.4), grid_cell=cell, unit_of_measure="m",
        thresholds=monitor_pb2.Thresholds(blue=0.2, yellow=0.4, orange=0.6, red=0.8),
        direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE,
        new_names=True)  # each test watches a hazard of its own
    for field, value in changes.items():
        if value is None:
            request.ClearField(field)  # type: ignore[arg-type]
        elif isinstance(value, (str, int, float)):
            setattr(request, field, value)
        else:
            getattr(request, field).CopyFrom(value)
    return request


def unit_request(unit_id: str, **changes: Any) -> resources_pb2.RegisterUnitRequest:
    request = resources_pb2.RegisterUnitRequest(
        id=unit_id, kind="ambulance", department="medical",
        home=common_pb2.GeoPoint(lat=31.2, lon=121.4))
    for field, value in changes.items():
        if value is None:
            request.ClearField(field)  # type: ignore[arg-type]
        elif isinstance(value, str):
            setattr(request, field, value)
        else:
            getattr(request, field).CopyFrom(value)
    return request


def report(api: Clients, metadata: tuple[tuple[str, str], ...] = ()) -> incident_pb2.Incident:
    return api.dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=common_pb2.GeoPoint(lat=31.23, lon=121.47),
        description=f"smell of gas {tag()}"), metadata=metadata, timeout=TIMEOUT).incident


def get_incident(api: Clients, incident_id: str) -> incident_pb2.Incident:
    return api.dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident_id),
                                    timeout=TIMEOUT).incident


def declare_request(incident_id: str, **changes: Any) -> dispatch_pb2.DeclareIncidentRequest:
    request = dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident_id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
        hazard_type="gas_leak", grade=incident_pb2.GRADE_IV)
    for field, value in changes.items():
        setattr(request, field, value)
    return request


# ---- bad input: INVALID_ARGUMENT naming the field, nothing written ----


def test_monitor_refuses_bad_sensors_naming_the_field(api: Clients) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[str, monitor_pb2.RegisterSensorRequest]] = []
    t = tag()
    falling = monitor_pb2.Thresholds(blue=0.8, yellow=0.6, orange=0.4, red=0.2)
    flat = monitor_pb2.Thresholds(blue=0.2, yellow=0.2, orange=0.6, red=0.8)
    cases.append(("thresholds", sensor_request(f"edge-falling-{t}", thresholds=falling)))
    cases.append(("thresholds", sensor_request(f"edge-flat-{t}", thresholds=flat)))
    cases.append(("location", sensor_request(f"edge-nowhere-{t}", location=None)))
    cases.append(("location", sensor_request(f"edge-lat91-{t}", lat=91)))
    cases.append(("kind", sensor_request(f"edge-nokind-{t}", kind="")))
    cases.append(("direction", sensor_request(f"edge-nodir-{t}",
                                              direction=monitor_pb2.DIRECTION_UNSPECIFIED)))
    cases.append(("id", sensor_request("")))
    for field, request in cases:
        message = refused(partial(api.monitor.RegisterSensor, request, timeout=TIMEOUT),
                          invalid, field)
        assert message.startswith(f"{field}:"), message
        if request.id:  # nothing was registered
            refused(partial(api.monitor.GetSensor, monitor_pb2.GetSensorRequest(id=request.id),
                            timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND, request.id)


def test_a_batch_with_one_unknown_sensor_is_refused_whole(api: Clients) -> None:
    t = tag()
    hazard, sensor_id = f"edge_flood_{t}", f"edge-gauge-{t}"
    api.monitor.RegisterSensor(sensor_request(sensor_id, hazard=hazard), timeout=TIMEOUT)
    readings = [monitor_pb2.Reading(sensor_id=sensor_id, value=0.9),  # would be red
                monitor_pb2.Reading(sensor_id=f"edge-ghost-{t}", value=0.1),
                monitor_pb2.Reading(sensor_id=sensor_id, value=0.5)]
    refused(lambda: api.monitor.IngestReadingBatch(
        monitor_pb2.IngestReadingBatchRequest(readings=readings), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT, "readings[1].sensor_id", f"edge-ghost-{t}")
    # The valid reading before it changed nothing.
    sensor = api.monitor.GetSensor(monitor_pb2.GetSensorRequest(id=sensor_id),
                                   timeout=TIMEOUT).sensor
    assert sensor.level == common_pb2.WARNING_LEVEL_NONE
    assert not sensor.HasField("level_reading")
    listed = api.monitor.ListWarnings(monitor_pb2.ListWarningsRequest(hazard=hazard),
                                      timeout=TIMEOUT)
    assert list(listed.warnings) == []
    refused(lambda: api.monitor.GetWarning(monitor_pb2.GetWarningRequest(
        id=f"{sensor.grid_cell}/{hazard}/1"), timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)
    # A value that is not a number is refused naming its place too.
    refused(lambda: api.monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(
        readings=[monitor_pb2.Reading(sensor_id=sensor_id, value=float("nan"))]),
        timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT, "readings[0].value")


def test_resources_refuses_bad_units_naming_the_field(api: Clients) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    t = tag()
    for field, request in [
        ("kind", unit_request(f"edge-u-nokind-{t}", kind="")),
        ("department", unit_request(f"edge-u-nodept-{t}", department="")),
        ("home", unit_request(f"edge-u-nohome-{t}", home=None)),
        ("home", unit_request(f"edge-u-lat91-{t}", home=common_pb2.GeoPoint(lat=91, lon=0))),
    ]:
        message = refused(partial(api.resources.RegisterUnit, request, timeout=TIMEOUT),
                          invalid, field)
        assert message.startswith(f"{field}:"), message
        refused(partial(api.resources.GetUnit, resources_pb2.GetUnitRequest(id=request.id),
                        timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND, request.id)

    unit_id = f"edge-u-{t}"
    before = api.resources.RegisterUnit(unit_request(unit_id), timeout=TIMEOUT).unit
    refused(lambda: api.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
        id=unit_id, status=common_pb2.UNIT_STATUS_UNSPECIFIED), timeout=TIMEOUT),
        invalid, "status")
    refused(lambda: api.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
        id="", status=common_pb2.UNIT_STATUS_EN_ROUTE), timeout=TIMEOUT), invalid, "id")
    after = api.resources.GetUnit(resources_pb2.GetUnitRequest(id=unit_id), timeout=TIMEOUT).unit
    assert after == before


def test_dispatch_refuses_bad_declarations_naming_the_field(api: Clients) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    incident = report(api)
    refused(lambda: api.dispatch.DeclareIncident(declare_request("not-a-uuid"), timeout=TIMEOUT),
            invalid, "incident_id")
    refused(lambda: api.dispatch.DeclareIncident(declare_request(
        incident.id, hazard_type="alien_invasion"), timeout=TIMEOUT), invalid, "hazard_type")
    refused(lambda: api.dispatch.DeclareIncident(declare_request(
        incident.id, grade=incident_pb2.GRADE_UNSPECIFIED), timeout=TIMEOUT), invalid, "grade")
    refused(lambda: api.dispatch.DeclareIncident(declare_request(
        incident.id, category=incident_pb2.CATEGORY_UNSPECIFIED), timeout=TIMEOUT),
        invalid, "category")
    refused(lambda: api.dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak"), timeout=TIMEOUT), invalid, "location")
    refused(lambda: api.dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard=" ", location=common_pb2.GeoPoint(lat=1, lon=1)), timeout=TIMEOUT),
        invalid, "hazard")
    refused(lambda: api.dispatch.MarkContained(dispatch_pb2.IncidentStepRequest(
        incident_id="nope"), timeout=TIMEOUT), invalid, "incident_id")
    after = get_incident(api, incident.id)
    assert after.version == incident.version == 1
    assert after.state == incident_pb2.INCIDENT_STATE_WARNING


# ---- unknown ids and repeats ----


def test_unknown_ids_are_not_found(api: Clients) -> None:
    missing = str(uuid.uuid4())
    not_found = grpc.StatusCode.NOT_FOUND
    refused(lambda: api.monitor.GetSensor(monitor_pb2.GetSensorRequest(id=missing),
                                          timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.monitor.GetWarning(monitor_pb2.GetWarningRequest(id=missing),
                                           timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.resources.GetUnit(resources_pb2.GetUnitRequest(id=missing),
                                          timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
        id=missing, status=common_pb2.UNIT_STATUS_EN_ROUTE), timeout=TIMEOUT),
        not_found, missing)
    refused(lambda: api.dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(
        incident_id=missing), timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.dispatch.CloseIncident(dispatch_pb2.IncidentStepRequest(
        incident_id=missing), timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.review.GetIncidentHistory(review_pb2.GetIncidentHistoryRequest(
        incident_id=missing), timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.review.ReplayIncident(review_pb2.ReplayIncidentRequest(
        incident_id=missing), timeout=TIMEOUT), not_found, missing)
    refused(lambda: api.review.EvaluateIncident(review_pb2.EvaluateIncidentRequest(
        incident_id=missing), timeout=TIMEOUT), not_found, missing)


def test_registering_twice_is_already_exists_and_keeps_the_first(api: Clients) -> None:
    t = tag()
    sensor_id, unit_id = f"edge-twice-{t}", f"edge-twice-u-{t}"
    first = api.monitor.RegisterSensor(sensor_request(sensor_id), timeout=TIMEOUT).sensor
    refused(lambda: api.monitor.RegisterSensor(sensor_request(sensor_id, kind="rainfall"),
                                               timeout=TIMEOUT),
            grpc.StatusCode.ALREADY_EXISTS, sensor_id)
    assert api.monitor.GetSensor(monitor_pb2.GetSensorRequest(id=sensor_id),
                                 timeout=TIMEOUT).sensor == first

    unit = api.resources.RegisterUnit(unit_request(unit_id), timeout=TIMEOUT).unit
    refused(lambda: api.resources.RegisterUnit(unit_request(unit_id, kind="fire_engine"),
                                               timeout=TIMEOUT),
            grpc.StatusCode.ALREADY_EXISTS, unit_id)
    assert api.resources.GetUnit(resources_pb2.GetUnitRequest(id=unit_id),
                                 timeout=TIMEOUT).unit == unit


# ---- illegal lifecycle steps: FAILED_PRECONDITION naming the rule, nothing written ----


def test_illegal_incident_steps_name_the_rule_and_write_nothing(api: Clients) -> None:
    precondition = grpc.StatusCode.FAILED_PRECONDITION
    incident = report(api)
    step = dispatch_pb2.IncidentStepRequest(incident_id=incident.id)

    refused(lambda: api.dispatch.CloseIncident(step, timeout=TIMEOUT), precondition,
            "close-after-recovery")
    assert get_incident(api, incident.id).version == incident.version
    refused(lambda: api.dispatch.MarkContained(step, timeout=TIMEOUT), precondition,
            "contain-after-declare")
    assert get_incident(api, incident.id).version == incident.version
    refused(lambda: api.dispatch.StartRecovery(step, timeout=TIMEOUT), precondition,
            "recover-after-contain")
    refused(lambda: api.dispatch.CompleteRecovery(step, timeout=TIMEOUT), precondition,
            "recovered-after-recovering")
    unchanged = get_incident(api, incident.id)
    assert unchanged.version == incident.version
    assert unchanged.state == incident_pb2.INCIDENT_STATE_WARNING

    dismissed = api.dispatch.DismissIncident(step, timeout=TIMEOUT).incident
    assert dismissed.state == incident_pb2.INCIDENT_STATE_DISMISSED
    assert dismissed.version == incident.version + 1
    refused(lambda: api.dispatch.DeclareIncident(declare_request(incident.id), timeout=TIMEOUT),
            precondition, "declare-from-warning")
    assert get_incident(api, incident.id).version == dismissed.version
    refused(lambda: api.dispatch.DismissIncident(step, timeout=TIMEOUT), precondition,
            "dismiss-from-warning")
    after = get_incident(api, incident.id)
    assert after.version == dismissed.version
    assert after.state == incident_pb2.INCIDENT_STATE_DISMISSED


def test_an_available_unit_cannot_go_on_scene(api: Clients) -> None:
    unit_id = f"edge-idle-{tag()}"
    before = api.resources.RegisterUnit(unit_request(unit_id), timeout=TIMEOUT).unit
    for status in (common_pb2.UNIT_STATUS_ON_SCENE, common_pb2.UNIT_STATUS_EN_ROUTE):
        refused(partial(api.resources.UpdateUnitStatus, resources_pb2.UpdateUnitStatusRequest(
            id=unit_id, status=status), timeout=TIMEOUT),
            grpc.StatusCode.FAILED_PRECONDITION, "moves-only-when-assigned", unit_id)
    refused(lambda: api.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
        id=unit_id, status=common_pb2.UNIT_STATUS_ASSIGNED), timeout=TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION, "assigned-by-dispatch")
    after = api.resources.GetUnit(resources_pb2.GetUnitRequest(id=unit_id), timeout=TIMEOUT).unit
    assert after == before
    assert after.status == common_pb2.UNIT_STATUS_AVAILABLE


# ---- health and reflection ----


def test_every_service_is_healthy_under_both_names(stack: Stack, api: Clients) -> None:
    for name in stack.SERVICES:
        health = health_pb2_grpc.HealthStub(api.channels[name])
        for service in ("", FULL_NAMES[name], HEALTH):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, (name, service)
        refused(partial(health.Check, health_pb2.HealthCheckRequest(
            service="lifeline.nothing.v1.Nothing"), timeout=TIMEOUT), grpc.StatusCode.NOT_FOUND)


def test_every_service_lists_itself_health_and_reflection(stack: Stack, api: Clients) -> None:
    for name in stack.SERVICES:
        reflection = reflection_pb2_grpc.ServerReflectionStub(api.channels[name])
        answers = list(reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT))
        assert len(answers) == 1
        listed = {s.name for s in answers[0].list_services_response.service}
        assert {FULL_NAMES[name], HEALTH, REFLECTION} <= listed, (name, listed)
        assert not listed & (set(FULL_NAMES.values()) - {FULL_NAMES[name]}), (name, listed)


# ---- one warning, one incident ----


def test_a_repeated_crossing_raises_one_warning_and_one_incident(api: Clients) -> None:
    t = tag()
    hazard, cell, sensor_id = f"edge_rain_{t}", cell_for(t), f"edge-rain-{t}"
    api.monitor.RegisterSensor(sensor_request(sensor_id, hazard=hazard, cell=cell),
                               timeout=TIMEOUT)
    batch = monitor_pb2.IngestReadingBatchRequest(
        readings=[monitor_pb2.Reading(sensor_id=sensor_id, value=0.3)])  # blue

    first = api.monitor.IngestReadingBatch(batch, timeout=TIMEOUT)
    assert first.accepted == 1
    assert [w.id for w in first.warnings] == [f"{cell}/{hazard}/1"]
    warning = first.warnings[0]
    assert warning.level == common_pb2.WARNING_LEVEL_BLUE
    incident_id = str(incident_id_for_warning(warning.id))

    def opened() -> incident_pb2.Incident | None:
        try:
            return get_incident(api, incident_id)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    incident = wait_until(opened, "dispatch to open an incident for the warning")
    assert incident.warning_id == warning.id
    assert incident.state == incident_pb2.INCIDENT_STATE_WARNING

    second = api.monitor.IngestReadingBatch(batch, timeout=TIMEOUT)
    assert second.accepted == 1
    assert list(second.warnings) == []  # nothing moved: no event left monitor

    # A later change of the same warning travels the same way, after any stray event of
    # the repeat (one warning, one incident: delivered in order), so once the incident
    # shows it, a stray would have arrived before it.
    marker = api.monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(
        readings=[monitor_pb2.Reading(sensor_id=sensor_id, value=0.5)]), timeout=TIMEOUT)
    assert [w.level for w in marker.warnings] == [common_pb2.WARNING_LEVEL_YELLOW]

    def at_yellow() -> incident_pb2.Incident | None:
        shown = get_incident(api, incident_id)
        return shown if shown.warning_level == common_pb2.WARNING_LEVEL_YELLOW else None

    moved = wait_until(at_yellow, "the incident to show the warning's new level")
    assert moved.version == incident.version + 1  # the level change, nothing before it

    listed = api.monitor.ListWarnings(monitor_pb2.ListWarningsRequest(hazard=hazard),
                                      timeout=TIMEOUT).warnings
    assert [w.id for w in listed] == [warning.id]
    assert listed[0].status == monitor_pb2.WARNING_STATUS_ACTIVE
    # The list is the read model, a moment behind the incident itself: once it shows the
    # level change too, a second incident for the warning would be listed as well.
    shown = wait_until(lambda: [i for i in all_incidents(api) if i.warning_id == warning.id
                                and i.warning_level == common_pb2.WARNING_LEVEL_YELLOW] or None,
                       "the incident list to show the level change")
    assert len(shown) == 1
    assert sum(1 for i in all_incidents(api) if i.warning_id == warning.id) == 1


def all_incidents(api: Clients) -> Iterator[incident_pb2.Incident]:
    token = ""
    while True:
        page = api.dispatch.ListIncidents(dispatch_pb2.ListIncidentsRequest(
            page=common_pb2.PageRequest(page_size=100, page_token=token)), timeout=TIMEOUT)
        yield from page.incidents
        token = page.next_page_token
        if not token:
            return


# ---- enum values and names the contract does not know ----


def test_report_with_an_impossible_location_is_refused(api: Clients) -> None:
    for point in (common_pb2.GeoPoint(lat=91, lon=0),
                  common_pb2.GeoPoint(lat=1, lon=float("nan"))):
        refused(partial(api.dispatch.ReportIncident, dispatch_pb2.ReportIncidentRequest(
            hazard="gas_leak", location=point, description=f"nowhere {tag()}"),
            timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT, "location")


def test_declare_with_an_unknown_grade_names_the_grade(api: Clients) -> None:
    incident = report(api)
    refused(lambda: api.dispatch.DeclareIncident(declare_request(incident.id, grade=9),
                                                 timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "grade")
    assert get_incident(api, incident.id).version == incident.version


def test_declare_with_an_unknown_category_is_refused(api: Clients) -> None:
    incident = report(api)
    refused(lambda: api.dispatch.DeclareIncident(declare_request(incident.id, category=9),
                                                 timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "category")


def test_register_sensor_with_an_unknown_direction_names_the_direction(api: Clients) -> None:
    request = sensor_request(f"edge-dir7-{tag()}", direction=7, thresholds=monitor_pb2.Thresholds(
        blue=0.8, yellow=0.6, orange=0.4, red=0.2))
    refused(lambda: api.monitor.RegisterSensor(request, timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "direction")


@pytest.mark.parametrize("service", ["dispatch", "resources", "monitor"])
def test_a_list_filter_outside_the_enum_is_invalid_argument(api: Clients, service: str) -> None:
    outside: Any = 42  # no such enum value; the wire carries it all the same
    calls: dict[str, tuple[Callable[[], Any], str]] = {
        "dispatch": (partial(api.dispatch.ListIncidents, dispatch_pb2.ListIncidentsRequest(
            state=outside), timeout=TIMEOUT), "state"),
        "resources": (partial(api.resources.ListUnits, resources_pb2.ListUnitsRequest(
            status=outside), timeout=TIMEOUT), "status"),
        "monitor": (partial(api.monitor.ListWarnings, monitor_pb2.ListWarningsRequest(
            status=outside), timeout=TIMEOUT), "status"),
    }
    call, field = calls[service]
    refused(call, grpc.StatusCode.INVALID_ARGUMENT, field)


def test_every_warning_raised_can_be_acknowledged(api: Clients) -> None:
    t = tag()
    hazard, sensor_id = f"flood/{t}", f"edge-slash-{t}"
    try:
        api.monitor.RegisterSensor(sensor_request(sensor_id, hazard=hazard,
                                                  cell=cell_for(t)), timeout=TIMEOUT)
    except grpc.RpcError as error:  # refusing such a hazard up front is a fix too
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "hazard" in (error.details() or "")
        return
    raised = api.monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(
        readings=[monitor_pb2.Reading(sensor_id=sensor_id, value=0.5)]), timeout=TIMEOUT)
    warning = raised.warnings[0]
    acknowledged = api.monitor.AcknowledgeWarning(monitor_pb2.AcknowledgeWarningRequest(
        id=warning.id), timeout=TIMEOUT).warning
    assert acknowledged.status == monitor_pb2.WARNING_STATUS_ACKNOWLEDGED


def test_a_unit_status_outside_the_enum_is_refused(api: Clients) -> None:
    # Last in the module on purpose: until fixed it stalls the resources read model, which
    # the `finally` heals by moving the unit to a valid status.
    unit_id = f"edge-status99-{tag()}"
    before = api.resources.RegisterUnit(unit_request(unit_id), timeout=TIMEOUT).unit
    try:
        outside: Any = 99  # no such UnitStatus
        refused(partial(api.resources.UpdateUnitStatus, resources_pb2.UpdateUnitStatusRequest(
            id=unit_id, status=outside), timeout=3), grpc.StatusCode.INVALID_ARGUMENT, "status")
        after = api.resources.GetUnit(resources_pb2.GetUnitRequest(id=unit_id),
                                      timeout=TIMEOUT).unit
        assert after == before
    finally:
        api.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
            id=unit_id, status=common_pb2.UNIT_STATUS_OUT_OF_SERVICE), timeout=30)
        healthy = f"edge-after-{tag()}"
        api.resources.RegisterUnit(unit_request(healthy), timeout=TIMEOUT)


# ---- the client-streaming ingest (a gateway's long-lived stream) ----


def test_streamed_readings_raise_and_escalate_one_warning(api: Clients) -> None:
    t = tag()
    api.monitor.RegisterSensor(sensor_request(f"stream-{t}", cell=cell_for(t)))
    values = [0.1, 0.3, 0.5, 0.9]  # none, blue, yellow, red: raised, then escalated
    answer = api.monitor.IngestReadings(iter(
        monitor_pb2.IngestReadingsRequest(reading=monitor_pb2.Reading(
            sensor_id=f"stream-{t}", value=v)) for v in values))
    assert answer.accepted == 4
    assert [w.id for w in answer.warnings] == [f"{cell_for(t)}/urban_flooding/1"]
    assert answer.warnings[0].level == common_pb2.WARNING_LEVEL_RED
    sensor = api.monitor.GetSensor(monitor_pb2.GetSensorRequest(id=f"stream-{t}")).sensor
    assert sensor.level == common_pb2.WARNING_LEVEL_RED


def test_a_bad_reading_in_a_stream_refuses_the_whole_stream(api: Clients) -> None:
    t = tag()
    api.monitor.RegisterSensor(sensor_request(f"stream-bad-{t}", cell=cell_for(t)))
    readings = [monitor_pb2.Reading(sensor_id=f"stream-bad-{t}", value=0.9),
                monitor_pb2.Reading(sensor_id=f"nobody-{t}", value=1.0)]
    refused(lambda: api.monitor.IngestReadings(iter(
        monitor_pb2.IngestReadingsRequest(reading=r) for r in readings)),
        grpc.StatusCode.INVALID_ARGUMENT, "readings[1].sensor_id")
    sensor = api.monitor.GetSensor(monitor_pb2.GetSensorRequest(id=f"stream-bad-{t}")).sensor
    assert sensor.level == common_pb2.WARNING_LEVEL_NONE
