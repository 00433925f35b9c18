"""Travel time over a city's road graph, around closed segments.

A city loads its road graph as GeoJSON: LineString features, each a segment with an `id`,
an optional `name`, a `speed_kmh` (or a `class` with a typical speed) and `oneway`. The
segments' end points are the graph's nodes (coordinates equal to 1e-6° are one node).
Travel time from a unit to an incident is: to the nearest node at access speed, the
fastest way over open segments (Dijkstra from the incident over the reversed graph, with
`scipy.sparse.csgraph`, kept per destination until a closure changes), and from the
incident's nearest node to the incident at access speed.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h3
import numpy as np
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from lifeline_resources.fleet import CIRCUITY, KM_PER_DEGREE, Point, distance_km

#: Typical speeds (km/h) by road class, when a segment gives no speed.
CLASS_SPEEDS_KMH = {"motorway": 80.0, "trunk": 60.0, "primary": 50.0, "secondary": 40.0,
                    "tertiary": 30.0, "residential": 25.0, "service": 15.0}
#: Getting from where a unit stands to the graph, and from the graph to the incident.
ACCESS_SPEED_KMH = 20.0
#: Destinations whose travel times are kept (per closure state).
CACHED_DESTINATIONS = 256


def _closes_on(value: Any, where: str) -> tuple[str, int] | None:
    """{"hazard": "urban_flooding", "level": "orange"} -> ("urban_flooding", ORANGE)."""
    if value is None:
        return None
    level = str(value.get("level", "")).upper() if isinstance(value, dict) else ""
    if not isinstance(value, dict) or not value.get("hazard") or \
            level not in ("BLUE", "YELLOW", "ORANGE", "RED"):
        raise ValueError(f"{where}: closes_on is {{\"hazard\": ..., \"level\": "
                         "\"blue|yellow|orange|red\"}")
    return str(value["hazard"]), common_pb2.WarningLevel.Value(f"WARNING_LEVEL_{level}")


@dataclass(frozen=True)
class Segment:
    id: str
    name: str
    nodes: tuple[int, int]
    seconds: float
    oneway: bool
    points: tuple[Point, ...] = ()
    #: (hazard, level): closed while a warning of that hazard at that level or worse is
    #: active in a grid cell the segment runs through (a flood-prone underpass).
    closes_on: tuple[str, int] | None = None


class RoadNetwork:
    """A `TravelModel` over a loaded road graph; thread-safe."""

    def __init__(self, name: str, segments: list[Segment], nodes: list[Point]) -> None:
        if not segments:
            raise ValueError(f"road graph {name} has no segments")
        self.name = name
        self.segments = {s.id: s for s in segments}
        self.nodes = nodes
        self._lat0 = sum(lat for lat, _ in nodes) / len(nodes)
        self._tree = cKDTree([self._flat(p) for p in nodes])
        self.closed: dict[str, str] = {}  # segment id -> reason
        self._lock = threading.Lock()
        self._times: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cells: dict[int, dict[str, set[str]]] = {}  # resolution -> segment -> cells
        self._matrix = self._build()
        self._generation = 0  # counts closures and reopenings

    @classmethod
    def load(cls, path: Path) -> RoadNetwork:
        """Read a GeoJSON FeatureCollection of LineString segments."""
        doc = json.loads(path.read_text())
        index: dict[tuple[float, float], int] = {}
        nodes: list[Point] = []

        def node(coordinate: list[float]) -> int:
            key = (round(coordinate[1], 6), round(coordinate[0], 6))  # GeoJSON is lon, lat
            if key not in index:
                index[key] = len(nodes)
                nodes.append(key)
            return index[key]

        segments = []
        for number, feature in enumerate(doc.get("features", [])):
            props: dict[str, Any] = feature.get("properties") or {}
            line = feature.get("geometry") or {}
            where = f"{path.name}: feature {number}"
            if line.get("type") != "LineString" or len(line.get("coordinates", [])) < 2:
                raise ValueError(f"{where}: a segment is a LineString of two points or more")
            points = [(c[1], c[0]) for c in line["coordinates"]]
            speed = float(props.get("speed_kmh") or CLASS_SPEEDS_KMH.get(
                str(props.get("class", "")), CLASS_SPEEDS_KMH["tertiary"]))
            if not 0 < speed <= 200:
                raise ValueError(f"{where}: speed_kmh must be above 0 and at most 200")
            length = sum(distance_km(a, b) for a, b in itertools.pairwise(points))
            segments.append(Segment(
                id=str(props.get("id") or f"segment-{number}"), name=str(props.get("name", "")),
                nodes=(node(line["coordinates"][0]), node(line["coordinates"][-1])),
                seconds=length / speed * 3600, oneway=bool(props.get("oneway", False)),
                points=tuple(points), closes_on=_closes_on(props.get("closes_on"), where)))
        return cls(str(doc.get("name") or path.stem), segments, nodes)

    def segments_in(self, cell: str) -> list[Segment]:
        """The segments that close on warnings and run through this H3 cell."""
        resolution = h3.get_resolution(cell)
        cells = self._cells.get(resolution)
        if cells is None:
            cells = self._cells[resolution] = {
                s.id: {h3.latlng_to_cell(*p, resolution) for p in s.points}
                for s in self.segments.values() if s.closes_on is not None}
        return [self.segments[i] for i, found in cells.items() if cell in found]

    # ---- closures ----

    def close(self, segment_id: str, reason: str) -> None:
        self.require(segment_id)
        with self._lock:
            self.closed[segment_id] = reason
            self._changed()

    def reopen(self, segment_id: str) -> None:
        self.require(segment_id)
        with self._lock:
            if self.closed.pop(segment_id, None) is not None:
                self._changed()

    def require(self, segment_id: str) -> None:
        """Refuse a segment id the loaded graph does not have."""
        if segment_id not in self.segments:
            raise InvalidArgument("segment_id", f"the road graph {self.name!r} has no segment "
                                                f"{segment_id[:64]!r}")

    def _changed(self) -> None:
        self._matrix = self._build()
        self._times.clear()
        self._generation += 1

    def _build(self) -> csr_matrix:
        """The reversed graph of open segments: entry [b, a] is the time from a to b, so
        Dijkstra from an incident's node gives every node's time to it."""
        rows, cols, seconds = [], [], []
        for s in self.segments.values():
            if s.id in self.closed:
                continue
            a, b = s.nodes
            rows.append(b)
            cols.append(a)
            seconds.append(s.seconds)
            if not s.oneway:
                rows.append(a)
                cols.append(b)
                seconds.append(s.seconds)
        n = len(self.nodes)
        # Parallel segments between two nodes: csr sums duplicates, so keep the fastest.
        fastest: dict[tuple[int, int], float] = {}
        for r, c, t in zip(rows, cols, seconds, strict=True):
            fastest[(r, c)] = min(t, fastest.get((r, c), math.inf))
        if not fastest:
            return csr_matrix((n, n))
        keys = list(fastest)
        return csr_matrix(([fastest[k] for k in keys], ([k[0] for k in keys],
                                                        [k[1] for k in keys])), shape=(n, n))

    # ---- the TravelModel ----

    def basis(self) -> str:
        closed = f", {len(self.closed)} closed" if self.closed else ""
        return f"road network {self.name!r} ({len(self.segments)} segments{closed})"

    def seconds(self, kind: str, origins: list[Point], destination: Point) -> list[float]:
        if not origins:
            return []
        target, egress = self._snap(destination)
        times = self._times_to(target)
        out = []
        for origin in origins:
            start, access = self._snap(origin)
            out.append(access + float(times[start]) + egress)
        return out

    def _times_to(self, target: int) -> np.ndarray:
        """Every node's time to target over the open roads. Computed outside the lock; a
        closure or reopening that lands meanwhile (the projector's thread) makes it compute
        again on the new roads, so no time from before a closure is kept."""
        while True:
            with self._lock:
                cached = self._times.get(target)
                if cached is not None:
                    self._times.move_to_end(target)
                    return cached
                matrix, generation = self._matrix, self._generation
            times = dijkstra(matrix, directed=True, indices=target)
            with self._lock:
                if generation != self._generation:
                    continue
                self._times[target] = times
                while len(self._times) > CACHED_DESTINATIONS:
                    self._times.popitem(last=False)
                return times

    def _snap(self, point: Point) -> tuple[int, float]:
        """The nearest node, and the seconds to get there from point."""
        _, index = self._tree.query(self._flat(point))
        node = int(index)
        km = distance_km(point, self.nodes[node]) * CIRCUITY
        return node, km / ACCESS_SPEED_KMH * 3600

    def _flat(self, point: Point) -> tuple[float, float]:
        return (point[0] * KM_PER_DEGREE,
                point[1] * KM_PER_DEGREE * math.cos(math.radians(self._lat0)))
