"""Every CAP alert taken in, against the running stack with the demo city's grid (Xuhui,
GB/T 2260 310104) loaded: the four example alerts of the OASIS CAP 1.2 specification import
through `lifeline-monitor cap import` (exit 0); the ones that name no place of the city are
listed as unplaced and wait in the city duty party's inbox; an alert addressed to 310104
reaches Xuhui's cells and their officers; its Update and Cancel change and end it; and a
document with a DOCTYPE (internal entity, XXE, billion laughs) is refused INVALID_ARGUMENT
with nothing written to the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor import grid

from tests.e2e.test_fuzz import Ledger
from tests.unit.test_monitor_cap_intake import HOSTILE

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA = ROOT / "tests" / "data" / "cap"
TIMEOUT = 10.0
GRID = grid.read_grid_file(ROOT / "grids" / "xuhui.toml")
XUHUI_CELLS = sorted(grid.cell_of(c.location) for c in GRID.cells)
OFFICERS = {grid.cell_of(c.location): c.grid_officer for c in GRID.cells}
DUTY = "city-emergency-office"
EXAMPLES = ["oasis_a1_homeland_security.xml", "oasis_a2_thunderstorm.xml",
            "oasis_a3_earthquake.xml", "oasis_a4_amber.xml"]


def cli(stack: Stack, *args: str, roles: tuple[str, ...] = ("operator", "viewer")
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env["LIFELINE_MONITOR_ADDR"] = stack.address("monitor")
    env["LIFELINE_STATE_DIR"] = "/nonexistent"
    env["LIFELINE_TOKEN"] = stack.token("duty-li", *roles)
    env["LIFELINE_TLS_CA"] = str(stack.authority.ca_file)  # type: ignore[union-attr]
    return subprocess.run([str(BIN / "lifeline-monitor"), *args], env=env, text=True,
                          capture_output=True, timeout=60, check=False)


def as_json(stack: Stack, *args: str) -> Any:
    done = cli(stack, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def city(module_stack: Stack) -> Stack:
    loaded = cli(module_stack, "load-grid", str(ROOT / "grids" / "xuhui.toml"),
                 roles=("admin",))
    assert loaded.returncode == 0, loaded.stderr
    return module_stack


@pytest.fixture(scope="module")
def monitor(city: Stack) -> Iterator[monitor_pb2_grpc.MonitorServiceStub]:
    channel = city.channel("monitor", city.token("cap-gateway", "operator", "viewer"))
    yield monitor_pb2_grpc.MonitorServiceStub(channel)
    channel.close()


def inbox(stack: Stack, party: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli(stack, "inbox", "--party", party, "--all",
                                             "--ndjson").stdout.splitlines() if line]


def test_the_specifications_four_examples_import_and_the_unplaced_wait_for_the_duty_party(
        city: Stack) -> None:
    for name in EXAMPLES:
        done = cli(city, "cap", "import", str(DATA / name))
        assert done.returncode == 0, (name, done.stderr)
    unplaced = as_json(city, "cap", "list", "--unplaced")
    listed = {f"{a['sender']},{a['identifier']}" for a in unplaced}
    assert {"hsas@dhs.gov,43b080713727", "KSTO@NWS.NOAA.GOV,KSTO1055887203",
            "trinet@caltech.edu,TRI13970876.2", "KARO@CLETS.DOJ.CA.GOV,KAR0-0306112239-SW"} \
        <= listed
    shown = cli(city, "cap", "list", "--unplaced")
    assert shown.returncode == 0 and "unplaced" in shown.stdout, shown.stderr
    amber = next(a for a in unplaced if a["identifier"] == "KAR0-0306112239-SW")
    assert [i["language"] for i in amber["infos"]] == ["en-US", "es-US"]
    waiting = wait_until(lambda: [n for n in inbox(city, DUTY) if n["warningId"] ==
                                  "cap:hsas@dhs.gov/43b080713727"] or None,
                         "the advisory in the duty party's inbox", TIMEOUT)
    assert waiting[0]["cellName"] == "U.S. nationwide and interests worldwide"

    dismissed = cli(city, "cap", "dismiss", "KARO@CLETS.DOJ.CA.GOV,KAR0-0306112239-SW",
                    "--reason", "Los Angeles County is not this city")
    assert dismissed.returncode == 0, dismissed.stderr
    again = cli(city, "cap", "dismiss", "KARO@CLETS.DOJ.CA.GOV,KAR0-0306112239-SW",
                "--reason", "twice")
    assert again.returncode != 0 and "cap-dismiss-unplaced" in again.stderr


def test_an_alert_addressed_to_310104_reaches_xuhuis_cells_and_their_officers(
        city: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    answer = as_json(city, "cap", "import", str(DATA / "xuhui_geocode_alert.xml"))
    assert sorted(answer["gridCells"]) == XUHUI_CELLS
    for cell in XUHUI_CELLS:
        warning = monitor.GetWarning(pb.GetWarningRequest(id=f"{cell}/heavy_rain/1"),
                                     timeout=TIMEOUT).warning
        assert warning.level == common_pb2.WARNING_LEVEL_YELLOW
        assert warning.responsible.grid_officer == OFFICERS[cell]
    first = XUHUI_CELLS[0]
    wait_until(lambda: any(n["warningId"] == f"{first}/heavy_rain/1"
                           for n in inbox(city, OFFICERS[first])) or None,
               f"the warning in {OFFICERS[first]}'s inbox", TIMEOUT)

    as_json(city, "cap", "import", str(DATA / "xuhui_geocode_update.xml"))
    assert {monitor.GetWarning(pb.GetWarningRequest(id=f"{c}/heavy_rain/1"),
                               timeout=TIMEOUT).warning.level for c in XUHUI_CELLS} == {
        common_pb2.WARNING_LEVEL_RED}
    as_json(city, "cap", "import", str(DATA / "xuhui_geocode_cancel.xml"))
    assert {monitor.GetWarning(pb.GetWarningRequest(id=f"{c}/heavy_rain/1"),
                               timeout=TIMEOUT).warning.status for c in XUHUI_CELLS} == {
        pb.WARNING_STATUS_CLEARED}
    ended = {a["identifier"]: a["status"] for a in as_json(city, "cap", "list")}
    assert ended["SH-MET-2025-0801-XH1"] == "CAP_ALERT_STATUS_UPDATED"
    assert ended["SH-MET-2025-0801-XH2"] == "CAP_ALERT_STATUS_CANCELLED"


def test_a_placed_alert_raises_its_warnings_where_the_duty_party_put_it(
        city: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    cli(city, "cap", "import", str(DATA / "oasis_a1_homeland_security.xml"))
    placed = as_json(city, "cap", "place", "hsas@dhs.gov,43b080713727", "--district",
                     "xuhui")
    assert placed["alert"]["status"] == "CAP_ALERT_STATUS_PLACED"
    assert len(placed["warningIds"]) == len(XUHUI_CELLS)
    done = wait_until(lambda: [n for n in inbox(city, DUTY) if n["warningId"] ==
                               "cap:hsas@dhs.gov/43b080713727" and n.get("acknowledgedBy")]
                      or None, "the advisory acknowledged in the duty inbox", TIMEOUT)
    assert done[0]["acknowledgedBy"] == "duty-li"


@pytest.mark.parametrize("document", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_document_with_a_doctype_is_refused_and_writes_nothing(
        city: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub, document: bytes) -> None:
    ledger = Ledger(city)
    try:
        before = ledger.quiet()
        with pytest.raises(grpc.RpcError) as refused:
            monitor.ImportCapAlert(pb.ImportCapAlertRequest(xml=document), timeout=TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "DOCTYPE is refused" in (refused.value.details() or "")
        assert ledger.count() == before
    finally:
        ledger.close()
