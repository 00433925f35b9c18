"""The grid on H3: a sensor's cell, the districts and cells a city loads, and who a warning
in a cell reaches."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import h3
import pytest
from eventsourcing.domain import Aggregate
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor import grid
from lifeline_monitor.domain import HazardWatch, Sensor, grid_cell_of

ROOT = Path(__file__).resolve().parents[2]
XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)
XUJIAHUI_CELL = "88309b96dbfffff"
NOW = datetime(2026, 7, 20, tzinfo=UTC)
CAUSE = Cause(actor="city-gis", occurred_at=NOW)


class Store:
    """Just enough of an application: aggregates by id, written when recorded."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}
        self.writes = 0

    def find(self, cls: type[Any], aggregate_id: UUID) -> Any:
        found = self.aggregates.get(aggregate_id)
        return found if isinstance(found, cls) else None

    def record(self, *aggregates: Aggregate, taking: object = None) -> list[Any]:
        for aggregate in aggregates:
            aggregate.collect_events()
            self.aggregates[aggregate.id] = aggregate
            self.writes += 1
        return []


def load(store: Store, request: pb.LoadGridRequest, resolution: int = 8
         ) -> pb.LoadGridResponse:
    answer, _ = grid.load_grid(store, request.districts, request.cells,  # type: ignore[arg-type]
                               resolution, CAUSE, NOW)
    return answer


def test_a_point_falls_in_the_h3_cell_at_the_grid_resolution() -> None:
    assert grid_cell_of(XUJIAHUI) == XUJIAHUI_CELL
    assert h3.get_resolution(grid_cell_of(XUJIAHUI)) == 8
    assert h3.get_resolution(grid_cell_of(XUJIAHUI, 9)) == 9
    assert h3.cell_to_parent(grid_cell_of(XUJIAHUI, 9), 8) == XUJIAHUI_CELL


def test_a_sensor_is_placed_in_its_cell_or_the_cell_it_names() -> None:
    req = pb.RegisterSensorRequest(id="rain-1", location=XUJIAHUI)
    assert grid.placed(req, 8).grid_cell == XUJIAHUI_CELL
    assert grid.placed(req, 9).grid_cell == grid_cell_of(XUJIAHUI, 9)
    assert req.grid_cell == ""  # the caller's request is left as it was
    named = pb.RegisterSensorRequest(id="rain-1", location=XUJIAHUI,
                                     grid_cell=XUJIAHUI_CELL.upper())
    assert grid.placed(named, 8).grid_cell == XUJIAHUI_CELL  # canonical spelling


@pytest.mark.parametrize(("cell", "problem"), [
    ("huangpu-07", "not an H3 cell"), ("8930e1d8c1fffff", "not an H3 cell"),
    (grid_cell_of(XUJIAHUI, 9), "resolution 9"), ("87309b96dffffff", "resolution 7")])
def test_a_named_cell_must_be_an_h3_cell_at_the_grid_resolution(cell: str,
                                                               problem: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        grid.placed(pb.RegisterSensorRequest(id="x", location=XUJIAHUI, grid_cell=cell), 8)
    assert refused.value.field == "grid_cell"
    assert problem in str(refused.value)


def test_a_location_off_the_globe_is_left_for_validation() -> None:
    req = pb.RegisterSensorRequest(id="x", location=common_pb2.GeoPoint(lat=91, lon=0))
    assert grid.placed(req, 8).grid_cell == ""


def xuhui() -> pb.LoadGridRequest:
    return grid.read_grid_file(ROOT / "grids" / "xuhui.toml")


def test_the_shipped_grid_loads_and_a_second_load_changes_nothing() -> None:
    store = Store()
    first = load(store, xuhui())
    assert (first.districts_changed, first.cells_changed, first.resolution) == (1, 7, 8)
    again = load(store, xuhui())
    assert (again.districts_changed, again.cells_changed) == (0, 0)

    view = grid.cell_view(store, XUJIAHUI_CELL)  # type: ignore[arg-type]
    assert view.district == "xuhui" and view.grid_officer == "wang-fang"
    assert "metro_station" in view.assets
    assert view.district_detail.duty_officer == "xuhui-duty-officer"
    assert grid.cell_of(view.location) == XUJIAHUI_CELL


def test_a_warning_in_a_loaded_cell_names_who_it_reaches() -> None:
    store = Store()
    load(store, xuhui())
    who = grid.responsible_for(store, XUJIAHUI_CELL, "urban_flooding")  # type: ignore[arg-type]
    assert who == pb.Responsible(
        district="xuhui", district_name="Xuhui District", grid_officer="wang-fang",
        duty_officer="xuhui-duty-officer", departments=["water", "police", "traffic"],
        cell_name="Xujiahui: underpass and metro station (lines 1, 9, 11)")
    elsewhere = grid.responsible_for(store, grid_cell_of(  # type: ignore[arg-type]
        common_pb2.GeoPoint(lat=39.9, lon=116.4)), "urban_flooding")
    assert elsewhere == pb.Responsible()

    sensor = Sensor.register(pb.RegisterSensorRequest(
        id="rain-xjh-01", kind="rainfall", hazard="urban_flooding", location=XUJIAHUI,
        unit_of_measure="mm/h", direction=pb.DIRECTION_HIGHER_IS_WORSE,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50)), CAUSE, NOW)
    reading = pb.Reading(sensor_id="rain-xjh-01", value=35)
    sensor.observe(reading, CAUSE, NOW)
    watch = HazardWatch.open(sensor.view, sensor.view.level, reading, CAUSE, NOW,
                             lambda: who)
    assert watch.warning.id == f"{XUJIAHUI_CELL}/urban_flooding/1"
    assert watch.warning.responsible == who


def test_a_redefined_cell_is_recorded_once() -> None:
    store = Store()
    load(store, xuhui())
    moved = pb.LoadGridRequest(cells=[pb.GridCell(cell=XUJIAHUI_CELL, district="xuhui",
                                                  grid_officer="liu-yang")])
    assert load(store, moved).cells_changed == 1
    assert load(store, moved).cells_changed == 0
    assert grid.cell_view(store, XUJIAHUI_CELL).grid_officer == "liu-yang"  # type: ignore[arg-type]


@pytest.mark.parametrize(("request_", "field"), [
    (pb.LoadGridRequest(), "cells"),
    (pb.LoadGridRequest(districts=[pb.District(id="")]), "districts[0].id"),
    (pb.LoadGridRequest(districts=[pb.District(id="a b")]), "districts[0].id"),
    (pb.LoadGridRequest(districts=[pb.District(id="d"), pb.District(id="d")]),
     "districts[1].id"),
    (pb.LoadGridRequest(districts=[pb.District(id="d", departments=[
        pb.HazardDepartments(hazard="fire"), pb.HazardDepartments(hazard="fire")])]),
     "districts[0].departments[1].hazard"),
    (pb.LoadGridRequest(cells=[pb.GridCell(district="xuhui")]), "cells[0].cell"),
    (pb.LoadGridRequest(cells=[pb.GridCell(cell="nope", district="xuhui")]),
     "cells[0].cell"),
    (pb.LoadGridRequest(cells=[pb.GridCell(
        location=common_pb2.GeoPoint(lat=95, lon=0), district="xuhui")]),
     "cells[0].location"),
    (pb.LoadGridRequest(cells=[pb.GridCell(cell=XUJIAHUI_CELL)]), "cells[0].district"),
    (pb.LoadGridRequest(cells=[pb.GridCell(cell=XUJIAHUI_CELL, district="nowhere")]),
     "cells[0].district"),
    (pb.LoadGridRequest(cells=[pb.GridCell(cell=XUJIAHUI_CELL, district="xuhui"),
                               pb.GridCell(location=XUJIAHUI, district="xuhui")]),
     "cells[1]"),
    (pb.LoadGridRequest(cells=[pb.GridCell(cell=XUJIAHUI_CELL, district="xuhui",
                                           assets=["metro station"])]), "cells[0].assets[0]"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_grid_is_refused_naming_the_field_and_changes_nothing(
        request_: pb.LoadGridRequest, field: str) -> None:
    store = Store()
    load(store, pb.LoadGridRequest(districts=[pb.District(id="xuhui")]))
    writes = store.writes
    with pytest.raises(InvalidArgument) as refused:
        load(store, request_)
    assert refused.value.field == field
    assert store.writes == writes


def test_a_grid_file_with_a_mistake_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "grid.toml"
    bad.write_text('[[cells]]\nat = [31.2]\ndistrict = "xuhui"\n')
    with pytest.raises(grid.GridFileError, match=r"cells\[0\]\.at"):
        grid.read_grid_file(bad)
    bad.write_text('[[districts]]\nid = "x"\ndepartments = ["water"]\n')
    with pytest.raises(grid.GridFileError, match=r"districts\[0\]\.departments"):
        grid.read_grid_file(bad)
    bad.write_text('[[district]]\nid = "x"\n')
    with pytest.raises(grid.GridFileError, match="district"):
        grid.read_grid_file(bad)
