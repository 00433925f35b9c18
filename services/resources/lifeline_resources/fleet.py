"""The fleet in memory: where each unit is, what it can do, and which would arrive first.

Resources answers "which units for this place" from here, not from a table scan: units
are indexed by the H3 cell of where they would start from (their station, and their
latest reported position while it is fresh), per kind they count for, so finding the
nearest few looks at a few cells around the place whatever the size of the fleet. The
nearest few by straight line are then ranked by estimated travel time (`TravelModel`),
as Resgrid re-ranks its closest units by routed ETA.

The index is a cache of the Unit aggregates (fed by the projector) and of position
reports (kept only here): the aggregate still has the last word on availability.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

import h3
from h3.api import basic_int as h3int

#: Cells of about 5 km² (edge ~1.4 km): a city's units spread over a few hundred of them.
RESOLUTION = 7
#: A lower bound on how much farther each ring of cells reaches (km). Two cells k rings
#: apart can be as close as k - 1 edges (across a vertex), and edges vary with the
#: projection's distortion: after scanning k rings, everything unscanned is at least
#: (k - 1) x RING_KM away, so the search never stops before the true nearest.
RING_KM = 0.75 * h3.average_hexagon_edge_length(RESOLUTION, unit="km")
EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180
#: Kinds with at most this many units are scanned whole, not ring by ring.
SCAN_BELOW = 256
#: Reported at most this many units passed over per kind, nearest first.
MAX_PASSED_OVER = 5

Point = tuple[float, float]


def distance_km(a: Point, b: Point) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dp, dl = p2 - p1, math.radians(b[1] - a[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


@dataclass(frozen=True)
class FleetUnit:
    id: str
    kinds: tuple[str, ...]  # its own kind first, then the further kinds it counts for
    department: str
    home: Point
    available: bool
    status: str  # e.g. "ON_SCENE", for the reasons given
    incident_id: str = ""
    position: Point | None = None
    position_at: datetime | None = None
    version: int = 0  # the Unit aggregate's; an older state never replaces a newer one


@dataclass(frozen=True)
class Candidate:
    unit: FleetUnit
    kind: str  # the kind it is counted as here
    origin: Point
    origin_label: str  # "station", "position" or "station (position stale)"
    distance_km: float
    eta_seconds: float = 0.0
    rank: int = 0


@dataclass(frozen=True)
class Choice:
    """Units of one kind for one place: who goes, ranked by travel time, who was passed
    over and why, and how travel time was estimated."""

    kind: str
    chosen: list[Candidate]
    passed_over: list[tuple[str, str]]  # (unit id, reason)
    basis: str
    missing: int = 0


class TravelModel(Protocol):
    def basis(self) -> str:
        """How travel times are estimated, as said on an assignment."""

    def seconds(self, kind: str, origins: list[Point], destination: Point) -> list[float]:
        """Travel time from each origin to the destination (math.inf: no way there)."""


#: Typical urban response speeds (km/h) by unit kind, for the estimate without a road graph.
SPEEDS_KMH = {"ambulance": 45.0, "police_car": 50.0, "fire_engine": 40.0, "ladder_truck": 35.0,
              "pump_truck": 35.0, "hazmat_team": 40.0}
DEFAULT_SPEED_KMH = 40.0
#: Road distance over straight-line distance in a city grid (about 1.2-1.4 in studies).
CIRCUITY = 1.3


class CircuityModel:
    """With no road graph: straight-line distance times circuity over a speed by kind."""

    def basis(self) -> str:
        return f"estimate: straight line x {CIRCUITY} at a typical speed by kind (no road graph)"

    def seconds(self, kind: str, origins: list[Point], destination: Point) -> list[float]:
        speed = SPEEDS_KMH.get(kind, DEFAULT_SPEED_KMH)
        return [distance_km(o, destination) * CIRCUITY / speed * 3600 for o in origins]


@dataclass
class _Index:
    cells: dict[str, dict[int, set[str]]] = field(default_factory=dict)  # kind -> cell -> ids
    available: dict[str, int] = field(default_factory=dict)  # kind -> available units
    units: dict[str, int] = field(default_factory=dict)  # kind -> units

    def add(self, unit: FleetUnit, cells: Iterable[int]) -> None:
        for kind in unit.kinds:
            by_cell = self.cells.setdefault(kind, {})
            for cell in cells:
                by_cell.setdefault(cell, set()).add(unit.id)
            self.units[kind] = self.units.get(kind, 0) + 1
            if unit.available:
                self.available[kind] = self.available.get(kind, 0) + 1

    def remove(self, unit: FleetUnit, cells: Iterable[int]) -> None:
        for kind in unit.kinds:
            by_cell = self.cells.get(kind, {})
            for cell in cells:
                ids = by_cell.get(cell)
                if ids is not None:
                    ids.discard(unit.id)
                    if not ids:
                        del by_cell[cell]
            self.units[kind] -= 1
            if unit.available:
                self.available[kind] -= 1


class Fleet:
    """Thread-safe: the projector updates it while requests read it."""

    def __init__(self, travel: TravelModel | None = None,
                 stale_after: timedelta = timedelta(minutes=5)) -> None:
        self.travel: TravelModel = travel or CircuityModel()
        self.stale_after = stale_after
        self._units: dict[str, FleetUnit] = {}
        self._cells: dict[str, tuple[int, ...]] = {}  # unit id -> the cells it is indexed in
        self._index = _Index()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._units)

    def get(self, unit_id: str) -> FleetUnit | None:
        return self._units.get(unit_id)

    def names(self) -> tuple[set[str], set[str]]:
        """The unit kinds (capabilities too) and the departments of the units."""
        with self._lock:
            units = list(self._units.values())
        return {k for u in units for k in u.kinds}, {u.department for u in units}

    # ---- keeping it current ----

    def upsert(self, unit: FleetUnit) -> None:
        """A unit as its aggregate now says (registered, assigned, status changed); the
        position it reported is kept."""
        with self._lock:
            old = self._units.get(unit.id)
            if old is not None:
                if unit.version and unit.version < old.version:
                    return  # the projector caught up with a state already shown
                unit = replace(unit, position=old.position, position_at=old.position_at)
            self._put(unit)

    def report_position(self, unit_id: str, position: Point, at: datetime) -> bool | None:
        """Take a position report; None for an unknown unit, False for one older than the
        unit's latest."""
        with self._lock:
            unit = self._units.get(unit_id)
            if unit is None:
                return None
            if unit.position_at is not None and at <= unit.position_at:
                return False
            self._put(replace(unit, position=position, position_at=at))
            return True

    def _put(self, unit: FleetUnit) -> None:
        old = self._units.get(unit.id)
        if old is not None:
            self._index.remove(old, self._cells[unit.id])
        cells = {h3int.latlng_to_cell(*unit.home, RESOLUTION)}
        if unit.position is not None:
            cells.add(h3int.latlng_to_cell(*unit.position, RESOLUTION))
        self._units[unit.id] = unit
        self._cells[unit.id] = tuple(cells)
        self._index.add(unit, cells)

    # ---- choosing ----

    def nearest(self, kind: str, place: Point, count: int, now: datetime,
                exclude: Collection[str] = ()) -> tuple[list[Candidate], list[Candidate]]:
        """The `count` available units of a kind nearest to place by straight line (fewer if
        the fleet has fewer), and the nearest few unavailable ones found nearer than the last
        of them (enough for `Choice.passed_over`). Units in `exclude` count as unavailable
        and are not reported."""
        with self._lock:
            by_cell = self._index.cells.get(kind, {})
            total = self._index.available.get(kind, 0)  # an upper bound, with exclusions
            everyone = self._index.units.get(kind, 0)
            units, stale_before = self._units, now - self.stale_after
            seen: set[str] = set()
            free: list[tuple[float, str, FleetUnit, Point, str]] = []
            busy: list[tuple[float, str, FleetUnit, Point, str]] = []
            lat, lon = place
            km_per_lon = KM_PER_DEGREE * math.cos(math.radians(lat))
            hypot = math.hypot
            # A kind with few units is cheaper to look at whole than ring by ring.
            rings = ((tuple(by_cell),) if everyone <= SCAN_BELOW
                     else _rings(h3int.latlng_to_cell(lat, lon, RESOLUTION)))
            nearest: list[tuple[float, str, FleetUnit, Point, str]] = []
            for k, ring in enumerate(rings):
                for cell in ring:
                    for unit_id in by_cell.get(cell, ()):
                        if unit_id in seen:
                            continue  # indexed at its station and at its position
                        seen.add(unit_id)
                        unit = units[unit_id]
                        # Where it would start from: its fresh position, else its station.
                        if unit.position is None or unit.position_at is None:
                            origin, label = unit.home, "station"
                        elif unit.position_at < stale_before:
                            origin, label = unit.home, "station (position stale)"
                        else:
                            origin, label = unit.position, "position"
                        # Flat-earth while searching (exact to 0.01% within a city).
                        found = (hypot((origin[0] - lat) * KM_PER_DEGREE,
                                       (origin[1] - lon) * km_per_lon),
                                 unit_id, unit, origin, label)
                        (free if unit.available and unit_id not in exclude else busy
                         ).append(found)
                nearest = heapq.nsmallest(count, free)
                if len(nearest) >= min(count, total) and (
                        not nearest or nearest[-1][0] <= (k - 1) * RING_KM):
                    break
                if len(seen) >= everyone or everyone <= SCAN_BELOW:
                    break  # every unit of the kind is in hand
        limit = nearest[-1][0] if nearest else math.inf

        def candidate(f: tuple[float, str, FleetUnit, Point, str]) -> Candidate:
            return Candidate(f[2], kind, f[3], f[4], distance_km(f[3], place))

        # Only the nearest few are ever reported (MAX_PASSED_OVER, by exact distance): in a
        # surge, most of the units near an incident are busy, and each would cost a Candidate.
        passed = heapq.nsmallest(2 * MAX_PASSED_OVER,
                                 (f for f in busy if f[0] < limit and f[1] not in exclude))
        chosen = sorted((candidate(f) for f in nearest), key=lambda c: (c.distance_km, c.unit.id))
        return chosen, [candidate(f) for f in passed]

    def choose(self, kind: str, count: int, place: Point, now: datetime,
               shortlist: int = 0, exclude: Collection[str] = ()) -> Choice:
        """The `count` units of a kind that would arrive first: the nearest `shortlist`
        by straight line (default count + 4, at least twice count), ranked by travel
        time."""
        shortlist = max(shortlist or count + 4, 2 * count)
        near, busy = self.nearest(kind, place, shortlist, now, exclude)
        seconds = self.travel.seconds(kind, [c.origin for c in near], place)
        # Built, not `dataclasses.replace`d: replace() costs a tenth of a query per call.
        ranked = sorted(((s, c.unit.id, c) for c, s in zip(near, seconds, strict=True)
                         if math.isfinite(s)), key=lambda r: r[:2])
        chosen = [Candidate(c.unit, c.kind, c.origin, c.origin_label, c.distance_km, s, n)
                  for n, (s, _, c) in enumerate(ranked[:count], start=1)]
        passed = _passed_over(chosen, near, busy, seconds)
        return Choice(kind, chosen, passed, self.travel.basis(), count - len(chosen))


def _passed_over(chosen: list[Candidate], near: list[Candidate], busy: list[Candidate],
                 seconds: list[float]) -> list[tuple[str, str]]:
    """Units nearer as the crow flies than the farthest one sent, and why they stayed."""
    if not chosen:
        return []
    farthest = max(c.distance_km for c in chosen)
    sent = {c.unit.id for c in chosen}
    slowest = max(c.eta_seconds for c in chosen)
    out: list[tuple[float, str, str]] = []
    for candidate, eta in zip(near, seconds, strict=True):
        if candidate.unit.id in sent or candidate.distance_km >= farthest:
            continue
        if not math.isfinite(eta):
            why = "no open road to the incident"
        else:
            why = (f"arrives later: {eta / 60:.1f} min against {slowest / 60:.1f} min "
                   f"(from {candidate.origin_label})")
        out.append((candidate.distance_km, candidate.unit.id, why))
    for candidate in busy:
        unit = candidate.unit
        why = (f"{unit.status.lower()} for incident {unit.incident_id}" if unit.incident_id
               else unit.status.lower().replace("_", " "))
        out.append((candidate.distance_km, unit.id, why))
    return [(unit_id, why) for _, unit_id, why in sorted(out)[:MAX_PASSED_OVER]]


def _rings(origin: int) -> Iterable[tuple[int, ...]]:
    """The origin cell, then each ring of cells around it, outwards."""
    k = 0
    while True:
        yield _ring(origin, k)
        k += 1


@lru_cache(maxsize=65_536)
def _ring(origin: int, k: int) -> tuple[int, ...]:
    """The cells k steps from origin (cached: a city asks about the same few hundred)."""
    try:
        return tuple(h3int.grid_ring(origin, k))
    except h3.H3BaseException:  # a pentagon nearby: the disk minus the one inside
        return tuple(set(h3int.grid_disk(origin, k)) - set(h3int.grid_disk(origin, k - 1)))
