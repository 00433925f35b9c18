"""Depots and stock through the running services.

The issue's test: 100 incidents declared at once, each asking (urban flooding, grade IV)
for a pump truck, a police car and 200 sandbags, over 10 units and one depot of limited
stock. No unit is on two incidents, the depot's stock never goes below zero (what it
reserved is exactly what it had), and every request is answered with assignments and
reservations or shortfalls. Then a depot's life: consumption and returns reported by its
department's operators, a delivery, and closure putting back what an incident still held.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.incident.v1 import incident_pb2 as ipb
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc
from lifeline.scenario import wait_until

from tests.conftest import StackFactory

pytestmark = pytest.mark.e2e
TIMEOUT = 30.0
INCIDENTS = 100
STOCK = 3100  # 15 incidents' worth of sandbags and half of a sixteenth's
XUHUI = common_pb2.GeoPoint(lat=31.1880, lon=121.4360)
BIN = Path(sys.executable).parent


def bags(quantity: int) -> pb.Material:
    return pb.Material(name="sandbags", quantity=quantity, unit="bag")


def place(n: int) -> common_pb2.GeoPoint:
    """Spread over a few kilometres of Xuhui."""
    return common_pb2.GeoPoint(lat=31.16 + (n % 10) * 0.006, lon=121.41 + (n // 10) * 0.006)


@pytest.fixture
def clients(make_stack: StackFactory) -> Iterator[tuple[Stack, dict[str, grpc.Channel]]]:
    stack = make_stack()
    channels = {
        "admin": stack.channel("resources", stack.token("fleet-office", "admin")),
        "operator": stack.channel("dispatch", stack.token("duty-wang", "operator")),
        "water": stack.channel("resources", stack.token("depot-zhao", "operator",
                                                        department="water")),
        "police": stack.channel("resources", stack.token("desk-sun", "operator",
                                                         department="police")),
        "commander": stack.channel("dispatch", stack.token("officer-li", "commander")),
    }
    yield stack, channels
    for channel in channels.values():
        channel.close()


def answered(incident: ipb.Incident) -> bool:
    """Every unit and material requested is assigned or reserved, or known missing."""
    units = Counter(u.unit_kind for u in incident.units)
    short = {s.unit_kind: s.count for s in incident.shortfalls}
    reserved = Counter[str]()
    for r in incident.materials_reserved:
        reserved[r.material.name] += r.material.quantity
    missing = {m.name: m.quantity for m in incident.material_shortfalls}
    return bool(incident.requested) and all(
        units[r.unit_kind] + short.get(r.unit_kind, 0) == r.count
        for r in incident.requested) and all(
        reserved[m.name] + missing.get(m.name, 0) == m.quantity
        for m in incident.materials_requested)


def test_100_requests_at_once_over_10_units_and_one_depot(
        clients: tuple[Stack, dict[str, grpc.Channel]]) -> None:
    _, ch = clients
    resources = resources_pb2_grpc.ResourcesServiceStub(ch["admin"])
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(ch["operator"])
    for n in range(5):
        for kind, department in (("pump_truck", "water"), ("police_car", "police")):
            resources.RegisterUnit(pb.RegisterUnitRequest(
                id=f"{kind}-{n}", kind=kind, department=department, home=place(n * 20)),
                timeout=TIMEOUT)
    resources.RegisterDepot(pb.RegisterDepotRequest(
        id="D-XUHUI", name="Xuhui flood depot", position=XUHUI, department="water",
        stock=[bags(STOCK)]), timeout=TIMEOUT)

    reported = [dispatch.ReportIncident.future(dispatch_pb2.ReportIncidentRequest(
        hazard="urban_flooding", location=place(n), description=f"ponding at point {n}"),
        timeout=TIMEOUT) for n in range(INCIDENTS)]
    ids = [f.result().incident.id for f in reported]
    # All 100 declarations in flight at once: 100 resource requests reach resources together.
    declared = [dispatch.DeclareIncident.future(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident_id, category=ipb.CATEGORY_NATURAL_DISASTER,
        hazard_type="urban_flooding", grade=ipb.GRADE_IV), timeout=TIMEOUT)
        for incident_id in ids]
    for future in declared:
        assert future.result().incident.state == ipb.INCIDENT_STATE_DECLARED

    def every_request_answered() -> list[ipb.Incident] | None:
        found = dispatch.ListIncidents(dispatch_pb2.ListIncidentsRequest(
            page=common_pb2.PageRequest(page_size=1000)), timeout=TIMEOUT).incidents
        done = [i for i in found if answered(i)]
        return list(found) if len(done) == INCIDENTS else None

    incidents = wait_until(every_request_answered, "every request answered", timeout=120)

    # No unit on two incidents, and every unit went to someone (demand far exceeds them).
    assignments = [(u.unit_id, i.id) for i in incidents for u in i.units]
    assert len(assignments) == 10
    assert len({unit_id for unit_id, _ in assignments}) == 10
    fleet = resources.ListUnits(pb.ListUnitsRequest(), timeout=TIMEOUT).units
    assert {(u.id, u.incident_id) for u in fleet} == set(assignments)
    assert all(u.status == common_pb2.UNIT_STATUS_ASSIGNED for u in fleet)
    unit_short = sum(s.count for i in incidents for s in i.shortfalls)
    assert unit_short == 2 * INCIDENTS - 10

    # The depot gave exactly what it had, never more: stock at zero, not below.
    reservations = [(r.depot_id, r.material.quantity) for i in incidents
                    for r in i.materials_reserved]
    assert {depot for depot, _ in reservations} == {"D-XUHUI"}
    assert sum(q for _, q in reservations) == STOCK
    missing = sum(m.quantity for i in incidents for m in i.material_shortfalls)
    assert missing == INCIDENTS * 200 - STOCK
    assert Counter(q for _, q in reservations) == Counter({200: 15, 100: 1})
    depot = resources.GetDepot(pb.GetDepotRequest(id="D-XUHUI"), timeout=TIMEOUT).depot
    stock = depot.stock[0]
    assert (stock.available, stock.reserved, stock.consumed) == (0, STOCK, 0)
    held = {r.incident_id: r.quantity for r in depot.reservations}
    assert held == {i.id: sum(r.material.quantity for r in i.materials_reserved)
                    for i in incidents if i.materials_reserved}


def test_use_is_reported_by_the_depots_department_and_closure_returns_the_rest(
        clients: tuple[Stack, dict[str, grpc.Channel]]) -> None:
    stack, ch = clients
    resources = resources_pb2_grpc.ResourcesServiceStub(ch["admin"])
    water = resources_pb2_grpc.ResourcesServiceStub(ch["water"])
    police = resources_pb2_grpc.ResourcesServiceStub(ch["police"])
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(ch["operator"])
    commander = dispatch_pb2_grpc.DispatchServiceStub(ch["commander"])
    resources.RegisterDepot(pb.RegisterDepotRequest(
        id="D-NEAR", position=XUHUI, department="water", stock=[bags(150)]), timeout=TIMEOUT)
    resources.RegisterDepot(pb.RegisterDepotRequest(
        id="D-FAR", position=common_pb2.GeoPoint(lat=31.23, lon=121.47), department="water",
        stock=[bags(1000)]), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as refused:
        resources.RestockDepot(pb.RestockDepotRequest(
            id="D-NEAR", materials=[pb.Material(name="sandbags", quantity=5, unit="pallet")]),
            timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "materials[0].unit" in (refused.value.details() or "")

    incident_id = dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="urban_flooding", location=XUHUI), timeout=TIMEOUT).incident.id
    commander.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident_id, category=ipb.CATEGORY_NATURAL_DISASTER,
        hazard_type="urban_flooding", grade=ipb.GRADE_IV), timeout=TIMEOUT)

    def reserved() -> ipb.Incident | None:
        found = commander.GetIncident(dispatch_pb2.GetIncidentRequest(
            incident_id=incident_id), timeout=TIMEOUT).incident
        return found if answered(found) else None

    incident = wait_until(reserved, "the sandbags reserved")
    # 200 bags: the nearest depot's 150, the rest from the next.
    assert [(r.depot_id, r.material.quantity) for r in incident.materials_reserved] == [
        ("D-NEAR", 150), ("D-FAR", 50)]

    use = pb.ReportMaterialUseRequest(depot_id="D-NEAR", incident_id=incident_id,
                                      use=pb.MATERIAL_USE_CONSUMED, materials=[bags(100)])
    with pytest.raises(grpc.RpcError) as refused:
        police.ReportMaterialUse(use, timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    depot = water.ReportMaterialUse(use, timeout=TIMEOUT).depot
    assert (depot.stock[0].available, depot.stock[0].reserved, depot.stock[0].consumed) == (
        0, 50, 100)
    with pytest.raises(grpc.RpcError) as refused:
        water.ReportMaterialUse(pb.ReportMaterialUseRequest(
            depot_id="D-NEAR", incident_id=incident_id, use=pb.MATERIAL_USE_RETURNED,
            materials=[bags(51)]), timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "use-what-was-reserved" in (refused.value.details() or "")
    water.ReportMaterialUse(pb.ReportMaterialUseRequest(
        depot_id="D-NEAR", incident_id=incident_id, use=pb.MATERIAL_USE_RETURNED,
        materials=[bags(10)]), timeout=TIMEOUT)
    resources.RestockDepot(pb.RestockDepotRequest(id="D-NEAR", materials=[bags(40)]),
                           timeout=TIMEOUT)

    def reported() -> ipb.Incident | None:
        found = commander.GetIncident(dispatch_pb2.GetIncidentRequest(
            incident_id=incident_id), timeout=TIMEOUT).incident
        return found if found.materials_returned else None

    # The incident's history shows what was used and brought back.
    incident = wait_until(reported, "the use reported on the incident")
    assert [(x.name, x.quantity) for x in incident.materials_consumed] == [("sandbags", 100)]
    assert [(x.name, x.quantity) for x in incident.materials_returned] == [("sandbags", 10)]

    # Through to closure: what the incident still holds (40 + 50 bags) goes back.
    for order in commander.ListOrders(dispatch_pb2.ListOrdersRequest(
            incident_id=incident_id), timeout=TIMEOUT).orders:
        commander.CancelOrder(dispatch_pb2.OrderStepRequest(
            incident_id=incident_id, order_id=order.id,
            action=dispatch_pb2.Action(reason="drill over")), timeout=TIMEOUT)
    for step in ("MarkContained", "StartRecovery", "CompleteRecovery"):
        getattr(commander, step)(dispatch_pb2.IncidentStepRequest(incident_id=incident_id),
                                 timeout=TIMEOUT)
    commander.ReleaseUnits(dispatch_pb2.ReleaseUnitsRequest(incident_id=incident_id),
                           timeout=TIMEOUT)
    commander.CloseIncident(dispatch_pb2.IncidentStepRequest(incident_id=incident_id),
                            timeout=TIMEOUT)

    def returned() -> dict[str, tuple[int, int, int]] | None:
        depots = resources.ListDepots(pb.ListDepotsRequest(department="water"),
                                      timeout=TIMEOUT).depots
        levels = {d.id: (d.stock[0].available, d.stock[0].reserved, d.stock[0].consumed)
                  for d in depots}
        return levels if all(not d.reservations for d in depots) else None

    assert wait_until(returned, "closure returning the reservations") == {
        "D-NEAR": (90, 0, 100), "D-FAR": (1000, 0, 0)}

    # The CLI shows the same, as a duty officer sees it.
    env = {**os.environ, "LIFELINE_STATE_DIR": str(stack.state_dir)}
    out = subprocess.run([str(BIN / "lifeline-resources"), "--addr", stack.address("resources"),
                          "depot", "list"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "D-NEAR" in out.stdout and "sandbags" in out.stdout
