"""The base map drawn under the live picture: the city's own roads and grid cells, from the
same files its services load, so a command centre needs no outside tile server."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import h3

#: The grid's H3 resolution when the city does not set LIFELINE_GRID_RESOLUTION.
GRID_RESOLUTION = 8


def shipped() -> list[Path]:
    """The demo city's roads and grid, as the services ship them."""
    found: list[Path] = []
    for package, folder, pattern in (("lifeline_resources", "shipped/roads", "*.geojson"),
                                     ("lifeline_monitor", "shipped/grids", "*.toml")):
        root = Path(str(resources.files(package))) / folder
        found += sorted(root.glob(pattern))
    return found


def load(files: list[Path], resolution: int = GRID_RESOLUTION) -> dict[str, Any]:
    """Roads as GeoJSON features, grid cells with their outlines, districts, and where the
    map opens."""
    roads: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    districts: list[dict[str, Any]] = []
    for path in files:
        if path.suffix == ".geojson":
            roads += json.loads(path.read_text())["features"]
        elif path.suffix == ".toml":
            grid = tomllib.loads(path.read_text())
            districts += [{"id": d["id"], "name": d.get("name", d["id"])}
                          for d in grid.get("districts", [])]
            for cell in grid.get("cells", []):
                index = cell.get("cell") or h3.latlng_to_cell(*cell["at"], resolution)
                cells.append({"cell": index, "name": cell.get("name", ""),
                              "district": cell.get("district", ""),
                              "outline": [[round(a, 6), round(b, 6)]
                                          for a, b in h3.cell_to_boundary(index)]})
        else:
            raise ValueError(f"{path}: the base map takes .geojson roads and .toml grids")
    points = [p for c in cells for p in c["outline"]] + [
        [lat, lon] for f in roads for lon, lat in f["geometry"]["coordinates"]]
    centre = ([sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)]
              if points else [0.0, 0.0])
    return {"roads": {"type": "FeatureCollection", "features": roads}, "cells": cells,
            "districts": districts, "centre": centre}
