"""Commands in bulk on a running stack: a call-taking system reports its queue and an
administrator registers a fleet, each in one call. A refused item refuses the call, named
by its index, and nothing is written; what was written is read back at once; a retry with
the same idempotency key is answered the same and writes nothing more."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc

from tests.e2e.test_identity import all_incidents, dispatch_as, refused

pytestmark = pytest.mark.e2e
TIMEOUT = 10.0
WHERE = common_pb2.GeoPoint(lat=31.23, lon=121.47)


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


def report(description: str, **fields: Any) -> dispatch_pb2.ReportIncidentRequest:
    given: dict[str, Any] = {"hazard": "gas_leak", "location": WHERE}
    return dispatch_pb2.ReportIncidentRequest(description=description, **{**given, **fields})


def unit(unit_id: str, **fields: Any) -> resources_pb2.RegisterUnitRequest:
    given: dict[str, Any] = {"kind": "ambulance", "department": "medical", "home": WHERE}
    return resources_pb2.RegisterUnitRequest(id=unit_id, **{**given, **fields})


def test_a_call_takers_queue_is_reported_in_one_call(stack: Stack) -> None:
    desk = dispatch_as(stack, "call-desk-7", "call-taker")
    before = all_incidents(stack)
    refused(lambda: desk.ReportIncidents(dispatch_pb2.ReportIncidentsRequest(reports=[
        report("fine"), report("misspelt", hazard="gas_leek")]), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT, "reports[1].hazard", "did you mean 'gas_leak'")
    refused(lambda: desk.ReportIncidents(dispatch_pb2.ReportIncidentsRequest(reports=[
        report("fine"), report("fine"), dispatch_pb2.ReportIncidentRequest(
            hazard="gas_leak", description="nowhere")]), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT, "reports[2].location: is required")
    assert all_incidents(stack) == before

    queue = dispatch_pb2.ReportIncidentsRequest(reports=[
        report("smell of gas, 3rd floor"),
        # The call-taker acts for the person on the call.
        report("gas hissing in the stairwell",
               action=dispatch_pb2.Action(actor="resident-zhang")),
        report("neighbours evacuating")])
    key = [("idempotency-key", str(uuid.uuid4()))]
    answer = desk.ReportIncidents(queue, metadata=key, timeout=TIMEOUT)
    assert [i.description for i in answer.incidents] == [
        "smell of gas, 3rd floor", "gas hissing in the stairwell", "neighbours evacuating"]
    assert [i.reporter for i in answer.incidents] == [
        "call-desk-7", "resident-zhang", "call-desk-7"]
    for incident in answer.incidents:  # read back at once: the caller reads its own writes
        found = desk.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident.id),
                                 timeout=TIMEOUT).incident
        assert found.description == incident.description
    assert desk.ReportIncidents(queue, metadata=key, timeout=TIMEOUT) == answer
    assert all_incidents(stack) == before + 3

    refused(lambda: dispatch_as(stack, "auditor", "viewer").ReportIncidents(
        queue, timeout=TIMEOUT), grpc.StatusCode.PERMISSION_DENIED)
    # An operator acts only as itself: the report naming someone else is named.
    refused(lambda: dispatch_as(stack, "officer-li", "operator").ReportIncidents(
        queue, timeout=TIMEOUT), grpc.StatusCode.PERMISSION_DENIED,
        "reports[1].action.actor: 'officer-li' may act only as itself")
    assert all_incidents(stack) == before + 3


def test_a_fleet_is_registered_in_one_call(stack: Stack) -> None:
    admin = resources_pb2_grpc.ResourcesServiceStub(
        stack.channel("resources", stack.token("fleet-office", "admin")))
    tag = uuid.uuid4().hex[:8]
    ids = [f"bulk-{tag}-{n}" for n in range(4)]
    refused(lambda: admin.RegisterUnits(resources_pb2.RegisterUnitsRequest(units=[
        unit(ids[0]), unit(ids[1], kind="ambulence")]), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT, "units[1].kind", "did you mean 'ambulance'")
    refused(lambda: admin.RegisterUnits(resources_pb2.RegisterUnitsRequest(units=[
        unit(ids[0]), unit(ids[1]), unit(ids[2], crew_size=1000)]), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT, "units[2].crew_size: at most 100")
    refused(lambda: admin.GetUnit(resources_pb2.GetUnitRequest(id=ids[0]), timeout=TIMEOUT),
            grpc.StatusCode.NOT_FOUND)

    # A kind new to the city, brought in by one unit, is known to the units after it.
    drone = f"drone_{tag}"
    fleet = resources_pb2.RegisterUnitsRequest(units=[
        unit(ids[0]), unit(ids[1], kind="fire_engine", department="fire"),
        unit(ids[2], kind=drone, new_names=True), unit(ids[3], kind=drone)])
    answer = admin.RegisterUnits(fleet, timeout=TIMEOUT)
    assert answer.registered == 4 and not answer.existing
    for unit_id, kind in zip(ids, ("ambulance", "fire_engine", drone, drone), strict=True):
        found = admin.GetUnit(resources_pb2.GetUnitRequest(id=unit_id), timeout=TIMEOUT).unit
        assert (found.kind, found.status) == (kind, common_pb2.UNIT_STATUS_AVAILABLE)

    again = admin.RegisterUnits(resources_pb2.RegisterUnitsRequest(
        units=[*fleet.units, unit(f"bulk-{tag}-4")]), timeout=TIMEOUT)
    assert again.registered == 1 and list(again.existing) == ids

    refused(lambda: resources_pb2_grpc.ResourcesServiceStub(stack.channel(
        "resources", stack.token("officer-li", "operator"))).RegisterUnits(
        fleet, timeout=TIMEOUT), grpc.StatusCode.PERMISSION_DENIED)
