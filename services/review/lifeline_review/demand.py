"""Demand, played through the same Incident aggregate and plans dispatch uses, on field
time, in process, touching nothing live: for rehearsal, tests and benchmarks.

Demand is a list of calls (`Call`): when and where an incident happened, its hazard and
grade, and the people's own times (how long until it was declared, how long the work on
scene took, recovery). It comes from recorded histories (`calls_from_histories`) or from a
seeded generator (`draw_calls`: Poisson arrivals, hazards by weight, some grid cells hot
spots, log-normal human times). `play` answers the calls with a fleet (`Unit`s at their
stations) and a plan library: the plan in force for the grade asks for units, the nearest
free unit of each kind is sent (great-circle distance; none free is a shortfall), it turns
out and travels at a stated speed, and the incident runs to closure. Every random draw of
a call comes from that call's own seeded generator, so the same demand played against two
layouts differs only by what the layout changed, and the same input always gives the same
histories, event for event.
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h3
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, event_of, from_timestamp, meta_of
from lifeline.incident.aggregate import Incident
from lifeline.incident.response import response_for
from lifeline.incident.v1 import incident_pb2 as ipb
from lifeline.plans import PlanLibrary, default_library

U = common_pb2.UnitStatus
#: Xuhui, Shanghai: the centre of the generated grid (H3 resolution 8).
DEFAULT_CENTRE = (31.1955, 121.4373)
GRADES = ((ipb.GRADE_IV, 0.5), (ipb.GRADE_III, 0.35), (ipb.GRADE_II, 0.12),
          (ipb.GRADE_I, 0.03))
#: Median minutes a department takes to acknowledge an order.
ACK_MEDIAN_MINUTES = {"fire": 2.0, "police": 3.0, "medical": 4.0, "water": 6.0,
                      "traffic": 5.0, "health": 8.0, "gas": 5.0, "environment": 9.0}
#: The unit kinds the shipped plans ask for.
FLEET_KINDS = ("ambulance", "epidemiology_team", "fire_engine", "gas_repair_crew",
               "hazmat_unit", "ladder_truck", "medical_team", "police_car", "pump_truck",
               "rescue_team")


@dataclass(frozen=True)
class DemandSpec:
    """A generated city's demand and fleet; a rehearsal spec file (TOML) sets any of these
    (hazards as a table of weights)."""

    incidents: int = 200
    seed: int = 1
    start: datetime = datetime(2026, 7, 20, 0, 0, tzinfo=UTC)
    hours: float = 24.0
    hazards: tuple[tuple[str, float], ...] = (
        ("urban_flooding", 0.3), ("traffic_accident", 0.3), ("high_rise_fire", 0.15),
        ("gas_leak", 0.15), ("chemical_spill", 0.05), ("infectious_disease", 0.05))
    cells: int = 30
    #: Share of incidents in the three hot-spot cells (the first three of the grid).
    hot_share: float = 0.5
    false_alarms: float = 0.08
    #: Units of each kind, at stations spread over the grid's cells.
    fleet: int = 40
    speed_kmh: float = 30.0
    #: Situation reports per hour of response (long histories for benchmarks).
    situation_reports_per_hour: float = 0.5

    @classmethod
    def load(cls, path: Path) -> DemandSpec:
        doc = tomllib.loads(path.read_text())
        known = set(cls.__dataclass_fields__)
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "hazards" in doc:
            doc["hazards"] = tuple((str(k), float(v)) for k, v in doc["hazards"].items())
        if "start" in doc and isinstance(doc["start"], datetime) and doc["start"].tzinfo is None:
            doc["start"] = doc["start"].replace(tzinfo=UTC)
        return cls(**doc)


@dataclass(frozen=True)
class Call:
    """One incident of demand: what happened and the people's own times, not how the
    city's units answered."""

    number: int
    at: datetime
    cell: str
    lat: float
    lon: float
    hazard: str
    grade: int
    false_alarm: bool = False
    declare_after: timedelta = timedelta(minutes=6)
    #: First unit on scene -> contained.
    work: timedelta = timedelta(minutes=45)
    #: Contained -> recovery started -> recovered -> closed.
    recovery_after: timedelta = timedelta(minutes=20)
    recovery: timedelta = timedelta(minutes=90)
    close_after: timedelta = timedelta(minutes=15)
    #: Seeds this call's own draws (turnout, acknowledgements).
    seed: int = 0


@dataclass(frozen=True)
class Unit:
    id: str
    kind: str
    lat: float
    lon: float


@dataclass
class Fleet:
    """Units at their stations; each is free again when its incident closes."""

    units: list[Unit]
    free_at: dict[str, datetime] = field(default_factory=dict)

    def nearest_free(self, kind: str, lat: float, lon: float, at: datetime
                     ) -> tuple[Unit, float] | None:
        best: tuple[float, str, Unit] | None = None
        for unit in self.units:
            if unit.kind != kind or self.free_at.get(unit.id, at) > at:
                continue
            distance = h3.great_circle_distance((lat, lon), (unit.lat, unit.lon), unit="km")
            if best is None or (distance, unit.id) < best[:2]:
                best = (distance, unit.id, unit)
        return None if best is None else (best[2], best[0])

    @classmethod
    def load(cls, path: Path) -> Fleet:
        """A fleet file (TOML): [[units]] with id, kind, lat, lon."""
        doc = tomllib.loads(path.read_text())
        units = []
        for index, u in enumerate(doc.get("units", [])):
            try:
                units.append(Unit(str(u["id"]), str(u["kind"]), float(u["lat"]),
                                  float(u["lon"])))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}: units[{index}]: needs id, kind, lat, lon "
                                 f"({error})") from None
        return cls(units)

    def dumps(self) -> str:
        return "".join(f'[[units]]\nid = "{u.id}"\nkind = "{u.kind}"\nlat = {u.lat:.6f}\n'
                       f"lon = {u.lon:.6f}\n\n" for u in self.units)


def grid_cells(count: int, centre: tuple[float, float] = DEFAULT_CENTRE) -> list[str]:
    """`count` H3 cells (resolution 8) in rings around the centre, nearest first."""
    origin = h3.latlng_to_cell(centre[0], centre[1], 8)
    cells: list[str] = []
    k = 0
    while len(cells) < count:
        cells.extend(sorted(h3.grid_ring(origin, k)))
        k += 1
    return cells[:count]


def default_fleet(spec: DemandSpec) -> Fleet:
    """spec.fleet units of each kind, at stations in the grid's cells taken in turn from
    the outermost ring inwards (stations sit where the hot spots are not)."""
    cells = grid_cells(spec.cells)[::-1]
    units = []
    for kind in FLEET_KINDS:
        for index in range(spec.fleet):
            lat, lon = h3.cell_to_latlng(cells[(index * 7 + len(kind)) % len(cells)])
            units.append(Unit(f"{kind}-{index + 1:03d}", kind, lat, lon))
    return Fleet(units)


def _lognormal(rng: random.Random, median_minutes: float, sigma: float = 0.5) -> timedelta:
    return timedelta(minutes=median_minutes * math.exp(rng.gauss(0, sigma)))


def draw_calls(spec: DemandSpec) -> list[Call]:
    """Generated demand: spec.incidents calls over spec.hours, in order of arrival."""
    rng = random.Random(spec.seed)
    cells = grid_cells(spec.cells)
    hot, rest = cells[:3], cells[3:] or cells[:3]
    names, weights = zip(*spec.hazards, strict=True)
    grades, grade_weights = zip(*GRADES, strict=True)
    mean_gap = spec.hours * 60 / max(1, spec.incidents)
    at, calls = spec.start, []
    for number in range(spec.incidents):
        at += timedelta(minutes=rng.expovariate(1 / mean_gap))
        cell = rng.choice(hot) if rng.random() < spec.hot_share else rng.choice(rest)
        lat, lon = h3.cell_to_latlng(cell)
        calls.append(Call(
            number=number, at=at, cell=cell, lat=lat, lon=lon,
            hazard=rng.choices(names, weights)[0],
            grade=int(rng.choices(grades, grade_weights)[0]),
            false_alarm=rng.random() < spec.false_alarms,
            declare_after=_lognormal(rng, 6, 0.7), work=_lognormal(rng, 45, 0.6),
            recovery_after=_lognormal(rng, 20, 0.4), recovery=_lognormal(rng, 90, 0.5),
            close_after=_lognormal(rng, 15, 0.3), seed=rng.getrandbits(32)))
    return calls


def calls_from_histories(histories: Iterable[Sequence[ipb.IncidentEvent]]) -> list[Call]:
    """Recorded demand: each history's time, place, hazard and grade, and the people's own
    times as they were recorded (defaults where a phase was never reached)."""
    calls = []
    for number, history in enumerate(sorted(
            (h for h in histories if h), key=lambda h: _at(h[0]))):
        seen: dict[str, datetime] = {}
        on_scene: list[datetime] = []
        grade, hazard = ipb.GRADE_IV, ""
        for event in history:
            kind, body = event_of(event)
            when = _at(event)
            if kind in ("opened", "reported"):
                hazard = body.hazard
            elif kind == "declared" and "declared" not in seen:
                grade, hazard = body.grade, body.hazard_type or hazard
            elif kind == "unit_status_reported" and body.status == U.UNIT_STATUS_ON_SCENE:
                on_scene.append(when)
            seen.setdefault(kind, when)
        opened = _at(history[0])
        first = event_of(history[0])[1]
        defaults = Call(0, opened, "", 0, 0, "", 0)
        contained = seen.get("contained")
        recovery = seen.get("recovery_started")
        recovered = seen.get("recovered")
        calls.append(Call(
            number=number, at=opened, cell=first.grid_cell, lat=first.location.lat,
            lon=first.location.lon, hazard=hazard, grade=grade,
            false_alarm="dismissed" in seen and "declared" not in seen,
            declare_after=seen["declared"] - opened if "declared" in seen
            else seen.get("dismissed", opened) - opened,
            work=contained - min(on_scene) if contained and on_scene else defaults.work,
            recovery_after=recovery - contained if recovery and contained
            else defaults.recovery_after,
            recovery=recovered - recovery if recovered and recovery else defaults.recovery,
            close_after=seen["closed"] - recovered if "closed" in seen and recovered
            else defaults.close_after,
            seed=number))
    return calls


def _at(event: ipb.IncidentEvent) -> datetime:
    return from_timestamp(meta_of(event).occurred_at)


Step = tuple[datetime, int, Callable[[Cause, datetime], None]]


def generate(spec: DemandSpec) -> list[list[ipb.IncidentEvent]]:
    """The histories of generated demand answered by the default fleet and shipped plans."""
    return play(draw_calls(spec), default_fleet(spec), default_library(), spec.speed_kmh,
                spec.situation_reports_per_hour)


def play(calls: Sequence[Call], fleet: Fleet, plans: PlanLibrary, speed_kmh: float = 30.0,
         situation_reports_per_hour: float = 0.5) -> list[list[ipb.IncidentEvent]]:
    """Each call's history, in order of arrival, answered by this fleet under these plans."""
    fleet = Fleet(fleet.units)  # every play starts with every unit at its station
    return [_incident(call, fleet, plans, speed_kmh, situation_reports_per_hour)
            for call in sorted(calls, key=lambda c: (c.at, c.number))]


def _incident(call: Call, fleet: Fleet, plans: PlanLibrary, speed_kmh: float,
              reports_per_hour: float) -> list[ipb.IncidentEvent]:
    rng = random.Random(call.seed)
    warning_id = f"{call.cell}/{call.hazard}/{call.number + 1}"
    incident = Incident.open_for_warning(
        warning_id, call.hazard, common_pb2.WARNING_LEVEL_ORANGE,
        common_pb2.GeoPoint(lat=call.lat, lon=call.lon), call.cell,
        Cause(actor="dispatch", occurred_at=call.at), _recorded(rng, call.at))
    steps: list[Step] = []
    declared = call.at + call.declare_after
    if call.false_alarm:
        steps.append((declared, 0, lambda c, now: incident.dismiss(c, now)))
        _play(incident, steps, rng)
        return _history(incident)
    response = response_for(plans, call.hazard, call.grade)
    plan = plans.plan_for(call.hazard)
    category = plan.category if plan else ipb.CATEGORY_ACCIDENT_DISASTER
    steps.append((declared, 0, lambda c, now: incident.declare(
        category, call.hazard, call.grade, response, c, now)))
    wanted = [(r.unit_kind, rng.uniform(1.0, 2.0)) for r in response.units
              for _ in range(r.count)]  # turnout minutes, drawn whatever the layout
    sent = []
    for kind, turnout in wanted:
        chosen = fleet.nearest_free(kind, call.lat, call.lon, declared)
        if chosen is None:
            steps.append((declared, 1, _short(incident, kind)))
            continue
        unit, distance = chosen
        fleet.free_at[unit.id] = datetime.max.replace(tzinfo=UTC)  # until closure, below
        en_route = declared + timedelta(minutes=turnout)
        sent.append((unit, distance, en_route,
                     en_route + timedelta(hours=distance / speed_kmh, minutes=1)))
    first_on_scene = min((s[3] for s in sent), default=declared + timedelta(hours=2))
    contained = first_on_scene + call.work
    last_verified = declared
    for index, order in enumerate(response.orders):
        order_id = f"O-{index + 1}"  # the plan's orders are issued in order at declaration
        ack = declared + _lognormal(rng, ACK_MEDIAN_MINUTES.get(order.department, 5), 0.6)
        done = ack + _lognormal(rng, 25, 0.6)
        if order.life_safety:
            done = max(min(done, contained - timedelta(minutes=2)), ack + timedelta(minutes=1))
            contained = max(contained, done + timedelta(minutes=3))
        steps.append((ack, 1, _ack(incident, order_id, order.department)))
        steps.append((done, 2, _complete(incident, order_id, order.department)))
        steps.append((done + timedelta(minutes=2), 3, _verify(incident, order_id)))
        last_verified = max(last_verified, done + timedelta(minutes=2))
    recovery = contained + call.recovery_after
    recovered = recovery + call.recovery
    closing = max(recovered, last_verified) + call.close_after
    released = min(contained + timedelta(minutes=10), closing)  # units go home once contained
    for unit, distance, en_route, on_scene in sent:
        fleet.free_at[unit.id] = released
        steps.append((declared, 1, _assign(incident, unit.id, unit.kind, distance)))
        steps.append((en_route, 2, _status(incident, unit.id, U.UNIT_STATUS_EN_ROUTE)))
        steps.append((on_scene, 3, _status(incident, unit.id, U.UNIT_STATUS_ON_SCENE)))
    reports = int(reports_per_hour * (contained - declared).total_seconds() / 3600)
    for index in range(reports):
        steps.append((declared + (contained - declared) * (index + 1) / (reports + 1), 4,
                      _situation(incident, index)))
    steps.append((contained, 5, lambda c, now: incident.contain(c, now)))
    steps.append((recovery, 5, lambda c, now: incident.start_recovery(c, now)))
    steps.append((recovered, 5, lambda c, now: incident.complete_recovery(c, now)))
    steps.append((released, 5, lambda c, now: incident.release_units([], c, now)))
    steps.append((closing, 6, lambda c, now: incident.close(c, now)))
    _play(incident, steps, rng)
    return _history(incident)


def _recorded(rng: random.Random, at: datetime) -> datetime:
    """When the software recorded a step: a few milliseconds after it happened."""
    return at + timedelta(milliseconds=rng.uniform(2, 20))


def _play(incident: Incident, steps: list[Step], rng: random.Random) -> None:
    for at, _, step in sorted(steps, key=lambda s: (s[0], s[1])):
        step(Cause(actor="duty-officer", occurred_at=at), _recorded(rng, at))


def _history(incident: Incident) -> list[ipb.IncidentEvent]:
    events: Sequence[Any] = incident.collect_events()
    return [incident.decode(e.payload) for e in events]  # type: ignore[misc]


def _ack(incident: Incident, order_id: str, department: str) -> Callable[[Cause, datetime], None]:
    def step(c: Cause, now: datetime) -> None:
        incident.acknowledge_order(order_id, replace(c, actor=f"{department}-duty"), now)
    return step


def _complete(incident: Incident, order_id: str, department: str
              ) -> Callable[[Cause, datetime], None]:
    def step(c: Cause, now: datetime) -> None:
        incident.complete_order(order_id, replace(c, actor=f"{department}-duty"), now)
    return step


def _verify(incident: Incident, order_id: str) -> Callable[[Cause, datetime], None]:
    return lambda c, now: incident.verify_order(order_id, c, now)


def _assign(incident: Incident, unit: str, kind: str, distance: float
            ) -> Callable[[Cause, datetime], None]:
    def step(c: Cause, now: datetime) -> None:
        # Resources answers a few tens of milliseconds after the declaration was recorded.
        incident.assign_unit("rehearsal", unit, kind, round(distance, 2),
                             replace(c, actor="resources"), now + timedelta(milliseconds=40))
    return step


def _short(incident: Incident, kind: str) -> Callable[[Cause, datetime], None]:
    return lambda c, now: incident.record_shortfall("rehearsal", kind, 1,
                                                    replace(c, actor="resources"), now)


def _status(incident: Incident, unit: str, status: int) -> Callable[[Cause, datetime], None]:
    def step(c: Cause, now: datetime) -> None:
        incident.report_unit_status(unit, status, replace(c, actor=unit), now)
    return step


def _situation(incident: Incident, index: int) -> Callable[[Cause, datetime], None]:
    return lambda c, now: incident.report_situation(ipb.SituationReported(
        text=f"situation report {index + 1}", affected=10 * (index + 1)), c, now)
