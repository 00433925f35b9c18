"""The city's grid (网格化) on H3: every warning belongs to an H3 cell at one resolution, and
the cells and districts the city loads say who the warning reaches (the cell's grid officer,
the district's duty officer, the departments the district names for the hazard).

Resolution 8 by default (`LIFELINE_GRID_RESOLUTION`): cells of about 0.74 km² whose
neighbours' centres are about 0.9 km apart. That keeps the old 0.01° squares' scale (sensors
a street apart make one warning, one flooded underpass is one situation), and one ring of
neighbours (`grid_disk(cell, 1)`, about 1.5 km across) is the reach coupled-risk rules mean
by "nearby". A grid officer's cell of a few thousand residents in a dense district is
within the field's figures (500 to 1,200 people per officer) at resolution 9; a city that
wants that grain sets 9 and loads its grid at 9.

Districts and cells are aggregates of their own, defined (and redefined) by `LoadGrid`; a
load that changes nothing records nothing. A district may carry administrative codes
(CAP geocodes such as GB/T 2260 310104); the grid index (one aggregate) keeps each
district's codes and cells and the city's duty party, which is where CAP alerts are placed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import h3
from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.edge import check_location, check_name
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, ProtoAggregate, event_of, stable_id
from lifeline.monitor.v1 import monitor_pb2 as pb

from lifeline_monitor.cap import geocodes
from lifeline_monitor.rosters import check_party

if TYPE_CHECKING:
    from lifeline.store import ServiceApplication

DEFAULT_RESOLUTION = 8


def cell_of(location: common_pb2.GeoPoint, resolution: int = DEFAULT_RESOLUTION) -> str:
    """The H3 cell at the grid's resolution that holds a point."""
    return str(h3.latlng_to_cell(location.lat, location.lon, resolution))


def centre_of(cell: str) -> common_pb2.GeoPoint:
    lat, lon = h3.cell_to_latlng(cell)
    return common_pb2.GeoPoint(lat=lat, lon=lon)


def ring(cell: str, k: int) -> list[str]:
    """The cell and every cell within k steps of it (H3 grid_disk)."""
    return [str(c) for c in h3.grid_disk(cell, k)]


HEX_INDEX = re.compile(r"^[0-9a-fA-F]{15,16}$")


def is_cell(value: str) -> bool:
    """An H3 cell index written as hex digits only (h3 itself would take ' 0x...')."""
    return bool(HEX_INDEX.match(value)) and bool(h3.is_valid_cell(value))


def canonical_cell(field: str, value: str, resolution: int) -> str:
    """An H3 cell id in its canonical (lower-case) spelling at the grid's resolution, or
    INVALID_ARGUMENT naming the field."""
    if not is_cell(value):
        raise InvalidArgument(field, f"{value[:24]!r} is not an H3 cell index")
    cell = str(h3.int_to_str(h3.str_to_int(value)))
    found = h3.get_resolution(cell)
    if found != resolution:
        raise InvalidArgument(field, f"H3 cell {cell} is at resolution {found}; this city's "
                                     f"grid is at resolution {resolution}")
    return cell


def placed(req: pb.RegisterSensorRequest, resolution: int) -> pb.RegisterSensorRequest:
    """The registration with its grid cell: the H3 cell of its location when none is given,
    else the given one checked. A location off the globe is left for validation to refuse."""
    if req.grid_cell:
        cell = canonical_cell("grid_cell", req.grid_cell, resolution)
    elif req.HasField("location") and _on_globe(req.location):
        cell = cell_of(req.location, resolution)
    else:
        return req
    if cell == req.grid_cell:
        return req
    copy = pb.RegisterSensorRequest()
    copy.CopyFrom(req)
    copy.grid_cell = cell
    return copy


def _on_globe(location: common_pb2.GeoPoint) -> bool:
    try:
        check_location("location", location)
    except InvalidArgument:
        return False
    return True


def district_id_of(district: str) -> UUID:
    return stable_id("district", district)


def cell_id_of(cell: str) -> UUID:
    return stable_id("grid-cell", cell)


class District(ProtoAggregate):
    EVENT_TYPE = pb.DistrictEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.view = pb.District()
        self.view.CopyFrom(event.district)

    @classmethod
    def define(cls, district: pb.District, cause: Cause, now: datetime) -> District:
        return cls.start(district_id_of(district.id), "defined",
                         pb.DistrictDefined(district=district), cause, now)

    def redefine(self, district: pb.District, cause: Cause, now: datetime) -> bool:
        if district == self.view:
            return False
        self.record("defined", pb.DistrictDefined(district=district), cause, now)
        return True

    def departments_for(self, hazard: str) -> list[str]:
        for entry in self.view.departments:
            if entry.hazard == hazard:
                return list(entry.departments)
        return []


class Cell(ProtoAggregate):
    EVENT_TYPE = pb.CellEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.view = pb.GridCell()
        self.view.CopyFrom(event.cell)

    @classmethod
    def define(cls, cell: pb.GridCell, cause: Cause, now: datetime) -> Cell:
        return cls.start(cell_id_of(cell.cell), "defined", pb.CellDefined(cell=cell), cause, now)

    def redefine(self, cell: pb.GridCell, cause: Cause, now: datetime) -> bool:
        if cell == self.view:
            return False
        self.record("defined", pb.CellDefined(cell=cell), cause, now)
        return True


def grid_index_id() -> UUID:
    return stable_id("grid-index")


class GridIndex(ProtoAggregate):
    """The city and each district's codes and cells, in one place (for CAP placement)."""

    EVENT_TYPE = pb.GridIndexEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.view = pb.GridIndex()
        self.view.CopyFrom(event.index)


def grid_index(app: ServiceApplication) -> pb.GridIndex | None:
    found = app.find(GridIndex, grid_index_id())
    return found.view if found is not None else None


def _indexed(before: pb.GridIndex | None, city: pb.City | None,
             districts: Sequence[pb.District], cells: Sequence[pb.GridCell]) -> pb.GridIndex:
    """The index after a load: its districts' codes replaced, its cells moved to theirs."""
    places: dict[str, pb.DistrictPlace] = {}
    if before is not None:
        for place in before.districts:
            places[place.district] = pb.DistrictPlace()
            places[place.district].CopyFrom(place)
    for district in districts:
        place = places.setdefault(district.id, pb.DistrictPlace(district=district.id))
        del place.geocodes[:]
        place.geocodes.extend(district.geocodes)
    moved = {c.cell for c in cells}
    for place in places.values():
        kept = [c for c in place.cells if c not in moved]
        del place.cells[:]
        place.cells.extend(kept)
    for cell in cells:
        places.setdefault(cell.district, pb.DistrictPlace(district=cell.district)) \
            .cells.append(cell.cell)
    index = pb.GridIndex(districts=[places[k] for k in sorted(places)])
    for place in index.districts:
        place.cells.sort()
    if city is not None:
        index.city.CopyFrom(city)
    elif before is not None:
        index.city.CopyFrom(before.city)
    return index


def _city(given: pb.City) -> pb.City:
    if given.duty_party:
        check_name("city.duty_party", given.duty_party)
    for n, name in enumerate(given.geocode_names):
        _code_text(f"city.geocode_names[{n}]", name)
    city = pb.City()
    city.CopyFrom(given)
    return city


def _code_text(field: str, value: str) -> None:
    if not value.strip() or len(value) > 64 or not value.isprintable():
        raise InvalidArgument(field, "1 to 64 printable characters")


def _district(index: int, given: pb.District, schemes: set[str]) -> pb.District:
    where = f"districts[{index}]"
    if not given.id.strip():
        raise InvalidArgument(f"{where}.id", "is required")
    check_name(f"{where}.id", given.id)
    if given.duty_officer:
        check_party(f"{where}.duty_officer", given.duty_officer)
    hazards: set[str] = set()
    for n, entry in enumerate(given.departments):
        field = f"{where}.departments[{n}]"
        check_name(f"{field}.hazard", entry.hazard)
        if entry.hazard in hazards:
            raise InvalidArgument(f"{field}.hazard", f"{entry.hazard!r} is named twice")
        hazards.add(entry.hazard)
        for m, department in enumerate(entry.departments):
            check_name(f"{field}.departments[{m}]", department)
    for n, code in enumerate(given.geocodes):
        field = f"{where}.geocodes[{n}]"
        _code_text(f"{field}.value_name", code.value_name)
        _code_text(f"{field}.value", code.value)
        if geocodes.scheme(code.value_name) not in schemes:
            raise InvalidArgument(f"{field}.value_name", f"{code.value_name!r} is not a "
                                  "geocode name the city knows (city.geocode_names)")
    district = pb.District()
    district.CopyFrom(given)
    return district


def _cell(index: int, given: pb.GridCell, resolution: int) -> pb.GridCell:
    where = f"cells[{index}]"
    if given.cell:
        cell = canonical_cell(f"{where}.cell", given.cell, resolution)
    elif given.HasField("location"):
        check_location(f"{where}.location", given.location)
        cell = cell_of(given.location, resolution)
    else:
        raise InvalidArgument(f"{where}.cell", "is required (or a location in the cell)")
    if not given.district.strip():
        raise InvalidArgument(f"{where}.district", "is required")
    check_name(f"{where}.district", given.district)
    if given.grid_officer:
        check_party(f"{where}.grid_officer", given.grid_officer)
    for n, asset in enumerate(given.assets):
        check_name(f"{where}.assets[{n}]", asset)
    return pb.GridCell(cell=cell, location=centre_of(cell), name=given.name,
                       district=given.district, grid_officer=given.grid_officer,
                       assets=sorted(set(given.assets)))


def load_grid(app: ServiceApplication, districts: Sequence[pb.District],
              cells: Sequence[pb.GridCell], resolution: int, cause: Cause, now: datetime,
              city: pb.City | None = None) -> tuple[pb.LoadGridResponse, list[Any]]:
    """Define or redefine districts and cells, all or nothing. A cell's district must be
    in the same load or loaded before."""
    if not districts and not cells and city is None:
        raise InvalidArgument("cells", "give at least one district or cell")
    before = grid_index(app)
    city = _city(city) if city is not None else None
    names = (city or (before.city if before is not None else pb.City())).geocode_names
    schemes = geocodes.known(names)
    wanted_districts: dict[str, pb.District] = {}
    for index, given in enumerate(districts):
        district = _district(index, given, schemes)
        if district.id in wanted_districts:
            raise InvalidArgument(f"districts[{index}].id", f"{district.id!r} is given twice")
        wanted_districts[district.id] = district
    wanted_cells: dict[str, pb.GridCell] = {}
    for index, place in enumerate(cells):
        cell = _cell(index, place, resolution)
        if cell.cell in wanted_cells:
            raise InvalidArgument(f"cells[{index}]", f"cell {cell.cell} is given twice")
        if cell.district not in wanted_districts and \
                app.find(District, district_id_of(cell.district)) is None:
            raise InvalidArgument(f"cells[{index}].district",
                                  f"no district {cell.district!r} is loaded or in this load")
        wanted_cells[cell.cell] = cell
    changed: list[ProtoAggregate] = []
    for district in wanted_districts.values():
        found = app.find(District, district_id_of(district.id))
        if found is None:
            changed.append(District.define(district, cause, now))
        elif found.redefine(district, cause, now):
            changed.append(found)
    districts_changed = len(changed)
    for cell in wanted_cells.values():
        known = app.find(Cell, cell_id_of(cell.cell))
        if known is None:
            changed.append(Cell.define(cell, cause, now))
        elif known.redefine(cell, cause, now):
            changed.append(known)
    answer = pb.LoadGridResponse(districts_changed=districts_changed,
                                 cells_changed=len(changed) - districts_changed,
                                 resolution=resolution)
    after = _indexed(before, city, list(wanted_districts.values()), list(wanted_cells.values()))
    kept = app.find(GridIndex, grid_index_id())
    if kept is None:
        changed.append(GridIndex.start(grid_index_id(), "indexed",
                                       pb.GridIndexed(index=after), cause, now))
    elif after != before:
        kept.record("indexed", pb.GridIndexed(index=after), cause, now)
        changed.append(kept)
    return answer, app.record(*changed)


def cell_view(app: ServiceApplication, cell: str) -> pb.GridCell:
    """A cell as the grid knows it, with its district; a cell the grid does not name is
    shown with its centre only."""
    known = app.find(Cell, cell_id_of(cell))
    view = pb.GridCell(cell=cell, location=centre_of(cell))
    if known is not None:
        view.CopyFrom(known.view)
        district = app.find(District, district_id_of(known.view.district))
        if district is not None:
            view.district_detail.CopyFrom(district.view)
    return view


def responsible_for(app: ServiceApplication, cell: str, hazard: str) -> pb.Responsible:
    """Who a warning on hazard in cell reaches, from the loaded grid (empty if unnamed)."""
    if not is_cell(cell):  # a grid cell named before the grid was on H3
        return pb.Responsible()
    known = app.find(Cell, cell_id_of(cell))
    if known is None:
        return pb.Responsible()
    who = pb.Responsible(district=known.view.district, grid_officer=known.view.grid_officer,
                         cell_name=known.view.name)
    district = app.find(District, district_id_of(known.view.district))
    if district is not None:
        who.district_name = district.view.name
        who.duty_officer = district.view.duty_officer
        who.departments.extend(district.departments_for(hazard))
    return who


def assets_of(app: ServiceApplication, cell: str) -> set[str]:
    known = app.find(Cell, cell_id_of(cell))
    return set(known.view.assets) if known is not None else set()


class GridFileError(ValueError):
    """A grid file refused: which file, which field, what is wrong."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}")


def read_grid_file(path: str | Path) -> pb.LoadGridRequest:
    """A city's grid from TOML (see grids/xuhui.toml): [[districts]] with id, name,
    duty_officer and a [districts.departments] table (hazard = [departments]); [[cells]]
    with `cell` (an H3 index) or `at` ([lat, lon]), name, district, grid_officer, assets.
    The service checks the rest (resolution, names, districts)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise GridFileError(path, "(file)", str(error)) from None
    unknown = set(data) - {"city", "districts", "cells"}
    if unknown:
        raise GridFileError(path, sorted(unknown)[0], "unknown key; a grid file has "
                                                      "[city], [[districts]] and [[cells]]")
    request = pb.LoadGridRequest()
    city = data.get("city")
    if city is not None:
        if not isinstance(city, dict):
            raise GridFileError(path, "city", "a table: duty_party, geocode_names")
        names = city.get("geocode_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GridFileError(path, "city.geocode_names", "a list of geocode value names")
        request.city.CopyFrom(pb.City(duty_party=_text(path, city, "duty_party", "city"),
                                      geocode_names=names))
    for index, entry in enumerate(_tables(path, data, "districts")):
        where = f"districts[{index}]"
        departments = entry.get("departments", {})
        if not isinstance(departments, dict):
            raise GridFileError(path, f"{where}.departments", "a table: hazard = [departments]")
        district = request.districts.add(
            id=_text(path, entry, "id", where), name=_text(path, entry, "name", where),
            duty_officer=_text(path, entry, "duty_officer", where))
        for hazard, names in departments.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise GridFileError(path, f"{where}.departments.{hazard}",
                                    "a list of department names")
            district.departments.add(hazard=hazard, departments=names)
        codes = entry.get("geocodes", {})
        if not isinstance(codes, dict) or not all(isinstance(v, str) for v in codes.values()):
            raise GridFileError(path, f"{where}.geocodes",
                                'a table: value name = "code" (e.g. "GB/T 2260" = "310104")')
        district.geocodes.extend(pb.Geocode(value_name=k, value=v) for k, v in codes.items())
    for index, entry in enumerate(_tables(path, data, "cells")):
        where = f"cells[{index}]"
        cell = request.cells.add(
            cell=_text(path, entry, "cell", where), name=_text(path, entry, "name", where),
            district=_text(path, entry, "district", where),
            grid_officer=_text(path, entry, "grid_officer", where))
        at = entry.get("at")
        if at is not None:
            if not (isinstance(at, list) and len(at) == 2
                    and all(isinstance(v, int | float) for v in at)):
                raise GridFileError(path, f"{where}.at", "[latitude, longitude] in degrees")
            cell.location.CopyFrom(common_pb2.GeoPoint(lat=at[0], lon=at[1]))
        assets = entry.get("assets", [])
        if not isinstance(assets, list) or not all(isinstance(a, str) for a in assets):
            raise GridFileError(path, f"{where}.assets", "a list of asset names")
        cell.assets.extend(assets)
    return request


def _tables(path: str | Path, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise GridFileError(path, key, f"an array of tables ([[{key}]])")
    return tables


def _text(path: str | Path, entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise GridFileError(path, f"{where}.{key}", "a string")
    return value
