"""The H3 cells at the grid's resolution an alert's areas cover: polygons, circles and H3
geocodes, bounded before H3 is asked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import h3
from lifeline.errors import InvalidArgument

from lifeline_monitor import grid
from lifeline_monitor.cap.schema import NS

#: Cells one imported alert may cover (a district at resolution 8 is a few hundred).
MAX_CELLS = 2000


def area_cells(area: Any, resolution: int, where: str) -> list[str]:
    """The cells at the grid's resolution one <area> covers (overlap): its polygons,
    circles and H3 geocodes (an H3 value that is no cell names no cell)."""
    found: dict[str, None] = {}
    for polygon in area.findall(f"{{{NS}}}polygon"):
        found.update(dict.fromkeys(_polygon_cells(polygon.text or "", resolution, where)))
    for circle in area.findall(f"{{{NS}}}circle"):
        found.update(dict.fromkeys(_circle_cells(circle.text or "", resolution, where)))
    for geocode in area.findall(f"{{{NS}}}geocode"):
        if (geocode.findtext(f"{{{NS}}}valueName") or "").strip().upper() == "H3":
            value = (geocode.findtext(f"{{{NS}}}value") or "").strip().lower()
            if grid.is_cell(value):
                found.update(dict.fromkeys(_h3_cells(value, resolution, where)))
        if len(found) > MAX_CELLS:
            break
    if len(found) > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}: covers more than {MAX_CELLS} cells")
    return list(found)


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


def _shape_cells(points: Sequence[tuple[float, float]], resolution: int, where: str
                 ) -> list[str]:
    # Refused before H3 is asked: a continent-sized polygon would take seconds to fill.
    if _area_km2(points) / h3.average_hexagon_area(resolution, "km^2") > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}: covers more than {MAX_CELLS} cells")
    try:
        shape = h3.LatLngPoly(list(points))
        cells = h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap")
    except (ValueError, h3.H3BaseException) as error:
        raise InvalidArgument("xml", f"{where}: not a usable area ({error})") from None
    if len(cells) > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}: covers more than {MAX_CELLS} cells")
    return sorted(str(c) for c in cells)


def _polygon_cells(text: str, resolution: int, where: str) -> list[str]:
    points = _points(text, f"{where}/polygon")
    if len(points) < 4 or points[0] != points[-1]:
        raise InvalidArgument("xml", f"{where}/polygon: at least four points, the first "
                                     "repeated last")
    return _shape_cells(points[:-1], resolution, f"{where}/polygon")


def _circle_cells(text: str, resolution: int, where: str) -> list[str]:
    here = f"{where}/circle"
    try:
        centre, radius_text = text.split()
        radius = float(radius_text)
    except ValueError:
        raise InvalidArgument("xml", f"{here}: 'lat,lon radius-km'") from None
    (lat, lon), = _points(centre, here)
    if not 0 <= radius <= 200:
        raise InvalidArgument("xml", f"{here}: radius must be 0 to 200 km")
    if radius == 0:
        return [str(h3.latlng_to_cell(lat, lon, resolution))]
    # A 36-sided polygon around the circle (its sides within 0.4% of the radius).
    dlat = radius / 111.32
    dlon = radius / (111.32 * max(math.cos(math.radians(lat)), 1e-6))
    ring = [(lat + dlat * math.sin(a), lon + dlon * math.cos(a))
            for a in (2 * math.pi * i / 36 for i in range(36))]
    return _shape_cells(ring, resolution, here)


def _h3_cells(value: str, resolution: int, where: str) -> list[str]:
    found = h3.get_resolution(value)
    if found > resolution:
        return [str(h3.cell_to_parent(value, resolution))]
    if 7 ** (resolution - found) > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}/geocode: covers more than {MAX_CELLS} cells")
    return sorted(str(c) for c in h3.cell_to_children(value, resolution))
