"""The H3 cells at the grid's resolution an alert's areas cover: polygons, circles and H3
geocodes, filled while they are small; a wider shape is kept as its ring, for the grid's
cells to be tested against."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import h3
from lifeline.errors import InvalidArgument

from lifeline_monitor import grid
from lifeline_monitor.cap.schema import NS

#: Cells one imported alert's shapes are filled with, at most; a shape wider than what is
#: left is kept as its ring and the grid's cells are tested against it instead.
MAX_CELLS = 2000
#: The widest circle taken (an earthquake's felt area, a tsunami's reach).
MAX_RADIUS_KM = 2000
Ring = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Covered:
    cells: tuple[str, ...]
    #: Shapes too wide to fill with cells (lat, lon rings).
    wide: tuple[Ring, ...]


def area_cells(area: Any, resolution: int, where: str, budget: int = MAX_CELLS) -> Covered:
    """The cells at the grid's resolution one <area> covers (overlap): its polygons,
    circles and H3 geocodes (an H3 value that is no cell names no cell); a shape that
    would take more than budget cells is kept whole instead."""
    found: dict[str, None] = {}
    wide: list[Ring] = []

    def add(ring: Ring, name: str) -> None:
        cells = _shape_cells(ring, resolution, f"{where}/{name}", budget - len(found))
        if cells is None:
            wide.append(ring)
        else:
            found.update(dict.fromkeys(cells))

    for polygon in area.findall(f"{{{NS}}}polygon"):
        add(_polygon(polygon.text or "", f"{where}/polygon"), "polygon")
    for circle in area.findall(f"{{{NS}}}circle"):
        centre, ring = _circle(circle.text or "", f"{where}/circle")
        if ring:
            add(ring, "circle")
        else:
            found[str(h3.latlng_to_cell(*centre, resolution))] = None
    for geocode in area.findall(f"{{{NS}}}geocode"):
        if (geocode.findtext(f"{{{NS}}}valueName") or "").strip().upper() == "H3":
            value = (geocode.findtext(f"{{{NS}}}value") or "").strip().lower()
            if not grid.is_cell(value):
                continue
            coarse = h3.get_resolution(value)
            if coarse > resolution:
                found[str(h3.cell_to_parent(value, resolution))] = None
            elif 7 ** (resolution - coarse) > budget - len(found):
                wide.append(tuple(h3.cell_to_boundary(value)))
            else:
                found.update(dict.fromkeys(str(c) for c in
                                           h3.cell_to_children(value, resolution)))
    return Covered(tuple(found), tuple(wide))


def inside(rings: Sequence[Ring], cells: Sequence[str]) -> set[str]:
    """The cells whose centres lie in any of the rings."""
    if not rings or not cells:
        return set()
    from matplotlib.path import Path  # only wide areas need it

    centres = [h3.cell_to_latlng(c) for c in cells]
    found: set[str] = set()
    for ring in rings:
        hits = Path(ring, closed=False).contains_points(centres)
        found.update(c for c, hit in zip(cells, hits, strict=True) if hit)
    return found


def _points(text: str, where: str) -> list[tuple[float, float]]:
    points = []
    for pair in text.split():
        try:
            lat, lon = (float(v) for v in pair.split(","))
        except ValueError:
            raise InvalidArgument("xml", f"{where}: {pair[:30]!r} is not lat,lon") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidArgument("xml", f"{where}: {pair[:30]!r} is off the globe")
        points.append((lat, lon))
    return points


def _area_km2(points: Sequence[tuple[float, float]]) -> float:
    """A polygon's area, near enough to bound the work (shoelace on an equirectangular
    projection at its mean latitude)."""
    mean = math.radians(sum(lat for lat, _ in points) / len(points))
    xy = [(lon * 111.32 * math.cos(mean), lat * 110.57) for lat, lon in points]
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2)
                   in zip(xy, xy[1:] + xy[:1], strict=True))) / 2


def _shape_cells(points: Sequence[tuple[float, float]], resolution: int, where: str,
                 budget: int) -> list[str] | None:
    """The cells a ring overlaps, or None when it is wider than budget cells (estimated
    before H3 is asked: a continent-sized polygon would take seconds to fill)."""
    if _area_km2(points) / h3.average_hexagon_area(resolution, "km^2") > budget:
        return None
    try:
        shape = h3.LatLngPoly(list(points))
        cells = h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap")
    except (ValueError, h3.H3BaseException) as error:
        raise InvalidArgument("xml", f"{where}: not a usable area ({error})") from None
    if len(cells) > budget:
        return None
    return sorted(str(c) for c in cells)


def _polygon(text: str, where: str) -> Ring:
    points = _points(text, where)
    if len(points) < 4 or points[0] != points[-1]:
        raise InvalidArgument("xml", f"{where}: at least four points, the first repeated last")
    return tuple(points[:-1])


def _circle(text: str, where: str) -> tuple[tuple[float, float], Ring]:
    """The centre, and a 36-sided polygon around the circle (its sides within 0.4% of the
    radius; none for radius 0)."""
    try:
        centre, radius_text = text.split()
        radius = float(radius_text)
    except ValueError:
        raise InvalidArgument("xml", f"{where}: 'lat,lon radius-km'") from None
    (lat, lon), = _points(centre, where)
    if not 0 <= radius <= MAX_RADIUS_KM:
        raise InvalidArgument("xml", f"{where}: radius must be 0 to {MAX_RADIUS_KM} km")
    if radius == 0:
        return (lat, lon), ()
    dlat = radius / 111.32
    dlon = radius / (111.32 * max(math.cos(math.radians(lat)), 1e-6))
    return (lat, lon), tuple((lat + dlat * math.sin(a), lon + dlon * math.cos(a))
                             for a in (2 * math.pi * i / 36 for i in range(36)))
