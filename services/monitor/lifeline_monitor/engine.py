"""Monitor's alarm engine: every sensor's rule state in memory, readings judged without
touching the store, and only transitions recorded (faults raised and cleared, shelving,
late readings kept, and the warnings that sensors' levels raise, move and clear: one event
per watch per call, naming the readings that moved it).

The state is rebuilt from the sensors' and watches' events on start. The application holds
one lock from deciding to committing (`MonitorApp.writing`), so the state in memory is
always what was committed: a write that fails puts back what the step touched.

Time: on-delay, off-delay and rate of change run on the readings' field time (measured_at).
Staleness and shelving run on the service's field clock: in drills and replays
(`LIFELINE_FIELD_CLOCK=observed`) the latest field time monitor has been told of; in
production the service clock (a sensor is stale when nothing came from it for its interval).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lifeline.errors import InvalidArgument
from lifeline.events import Cause, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb

from lifeline_monitor import rules as r
from lifeline_monitor.alarms import rules_of
from lifeline_monitor.domain import HazardWatch, Sensor, watch_id_of

STALE, BAD = pb.FAULT_KIND_STALE, pb.FAULT_KIND_BAD_QUALITY
MAX_LATE_KEPT = 100
MAX_MOVED_BY = 20
Responsible = Callable[[str, str], pb.Responsible]
#: Readings as columns: sensor ids, values, field times (seconds since the epoch, 0: unset).
Columns = tuple[Sequence[str], Sequence[float], Sequence[float]]


@dataclass(slots=True)
class Tracked:
    """One registered sensor: its aggregate (registration, faults, shelving) and rules."""

    sensor: Sensor
    state: r.SensorState
    watch_id: UUID
    #: Frame time of its last reading (staleness); None until known.
    seen: float | None = None
    shelved_until: float | None = None
    faults: set[int] = field(default_factory=set)
    #: The reading that set its current level (evidence when it rejoins a warning).
    level_reading: pb.Reading | None = None


@dataclass
class Step:
    """What one call touched, to put back if its write fails, and what it reports."""

    states: dict[str, r.SensorState] = field(default_factory=dict)
    level_readings: dict[str, pb.Reading | None] = field(default_factory=dict)
    sensors: set[str] = field(default_factory=set)
    watches: set[UUID] = field(default_factory=set)
    added: list[str] = field(default_factory=list)
    moves: dict[UUID, list[tuple[Tracked, int, pb.Reading]]] = field(default_factory=dict)
    late: dict[str, list[pb.Reading]] = field(default_factory=dict)
    late_count: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    faults: list[pb.SensorFaultChange] = field(default_factory=list)

    def keep(self, sensor_id: str, state: r.SensorState) -> None:
        if sensor_id not in self.states:
            self.states[sensor_id] = state.copy()


def _seconds(when: datetime) -> float:
    return when.timestamp()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Engine:
    def __init__(self, observed: bool, responsible: Responsible) -> None:
        self.observed, self.responsible = observed, responsible
        self.sensors: dict[str, Tracked] = {}
        self.by_uuid: dict[UUID, str] = {}
        self.watches: dict[UUID, HazardWatch] = {}
        self._stale: list[tuple[float, str]] = []
        self._shelved: list[tuple[float, str]] = []
        #: Observed mode: the latest field time any reading carried.
        self.latest: float | None = None
        #: The service clock's now of the step being decided (events' recorded_at).
        self.now = datetime.now(UTC)

    # ---- building ----

    def fold(self, aggregates: Sequence[Any]) -> None:
        """Take the aggregates rebuilt from the store on start."""
        for aggregate in aggregates:
            if isinstance(aggregate, HazardWatch):
                self.watches[aggregate.id] = aggregate
        for aggregate in aggregates:
            if isinstance(aggregate, Sensor):
                self._track(aggregate)

    def _track(self, sensor: Sensor) -> Tracked:
        view = sensor.view
        watch_id = watch_id_of(view.grid_cell, view.hazard)
        state = r.SensorState(rules_of(view))
        watch = self.watches.get(watch_id)
        active = watch.active if watch is not None else None
        if active is not None and view.id in active.sensor_levels:
            state.level = int(active.sensor_levels[view.id])
            state.__post_init__()
        tracked = Tracked(sensor, state, watch_id, faults={f.kind for f in view.faults})
        if view.HasField("shelving"):
            tracked.shelved_until = view.shelving.until.ToDatetime(tzinfo=UTC).timestamp()
            heapq.heappush(self._shelved, (tracked.shelved_until, view.id))
        if state.rules.expected_interval:
            heapq.heappush(self._stale, (-math.inf, view.id))
        self.sensors[view.id] = tracked
        self.by_uuid[sensor.id] = view.id
        return tracked

    def add(self, sensor: Sensor, step: Step) -> None:
        self._track(sensor)
        step.added.append(sensor.view.id)

    def frame_now(self, service_now: datetime) -> float | None:
        """Now, for staleness and shelving (see the module's doc)."""
        return self.latest if self.observed else _seconds(service_now)

    # ---- readings ----

    def ingest(self, readings: Sequence[pb.Reading], step: Step, service_now: datetime,
               columns: Columns | None = None) -> None:
        """Judge readings in order; transitions go to step (recorded by flush). columns: the
        readings' sensor ids, values and field times (seconds) as the edge read them
        (`lifeline_monitor.readings.checked_readings`), read here when not given; a steady reading
        then costs no protobuf access."""
        self.now = service_now
        sensors, observed, now_s = self.sensors, self.observed, _seconds(service_now)
        latest = self.latest if self.latest is not None else -math.inf
        if columns is None:
            columns = ([r.sensor_id for r in readings], [r.value for r in readings],
                       [r.measured_at.seconds + r.measured_at.nanos * 1e-9 for r in readings])
        sensor_ids, values, times = columns
        get = sensors.get
        for index, (sensor_id, value, at) in enumerate(zip(sensor_ids, values, times,
                                                           strict=True)):
            tracked = get(sensor_id)
            if tracked is None:
                raise InvalidArgument(f"readings[{index}].sensor_id",
                                      f"no sensor {sensor_id[:40]!r} is registered")
            at = at or now_s  # unset: now
            if at > latest:
                latest = at
            state = tracked.state
            if at < state.last_at:
                self._late(tracked, readings[index], step)
                continue
            tracked.seen = at if observed else now_s
            if state.lo < value < state.hi and not tracked.faults:
                state.last_at = at  # valid and steady: the common case
                continue
            reading = readings[index]
            rules = state.rules
            if not rules.valid_min <= value <= rules.valid_max:
                self._bad(tracked, reading, at, step)
                continue
            if tracked.faults:
                self._recovered(tracked, reading, at, step)
                if state.lo < value < state.hi:
                    state.last_at = at
                    continue
            step.keep(sensor_id, state)
            level = state.observe(value, at)
            if level:
                step.level_readings.setdefault(sensor_id, tracked.level_reading)
                tracked.level_reading = reading
                if tracked.shelved_until is None:
                    step.moves.setdefault(tracked.watch_id, []).append((tracked, level, reading))
        if observed and latest > -math.inf:
            self.latest = latest

    def _late(self, tracked: Tracked, reading: pb.Reading, step: Step) -> None:
        sensor_id = reading.sensor_id
        step.late_count[sensor_id] = step.late_count.get(sensor_id, 0) + 1
        kept = step.late.setdefault(sensor_id, [])
        if len(kept) < MAX_LATE_KEPT:
            kept.append(reading)

    def _bad(self, tracked: Tracked, reading: pb.Reading, at: float, step: Step) -> None:
        step.bad += 1
        if BAD in tracked.faults:
            return
        rules, unit = tracked.state.rules, tracked.sensor.view.unit_of_measure
        self._fault(tracked, BAD, True, reading, at, step,
                    f"{reading.value:g} is outside the valid range "
                    f"{rules.valid_min:g}..{rules.valid_max:g} {unit}")

    def _recovered(self, tracked: Tracked, reading: pb.Reading, at: float, step: Step) -> None:
        for kind in sorted(tracked.faults):
            self._fault(tracked, kind, False, reading, at, step)
            if kind == STALE and tracked.seen is not None:
                heapq.heappush(self._stale, (tracked.seen + tracked.state.rules.expected_interval,
                                             reading.sensor_id))

    def _fault(self, tracked: Tracked, kind: int, active: bool, reading: pb.Reading | None,
               at: float, step: Step, detail: str = "", actor: str = "monitor") -> None:
        view = tracked.sensor.view
        step.sensors.add(view.id)
        cause = Cause(actor=actor, occurred_at=_at(at), correlation_id=f"sensor:{view.id}")
        now = self.now
        if active:
            tracked.faults.add(kind)
            tracked.sensor.record("fault_raised", pb.SensorFaultRaised(
                sensor_id=view.id, kind=kind, owner=view.owner, reading=reading,  # type: ignore[arg-type]
                detail=detail), cause, now)
        else:
            tracked.faults.discard(kind)
            tracked.sensor.record("fault_cleared", pb.SensorFaultCleared(
                sensor_id=view.id, kind=kind, owner=view.owner, reading=reading), cause, now)  # type: ignore[arg-type]
        step.faults.append(pb.SensorFaultChange(sensor_id=view.id, kind=kind, active=active))  # type: ignore[arg-type]

    # ---- time passing: stale sensors, shelving that ran out ----

    def expire(self, service_now: datetime, step: Step) -> None:
        self.now = service_now
        now = self.frame_now(service_now)
        if now is None:
            return
        stale = self._stale
        while stale and stale[0][0] <= now:
            _, sensor_id = heapq.heappop(stale)
            tracked = self.sensors.get(sensor_id)
            if tracked is None or not tracked.state.rules.expected_interval:
                continue
            interval = tracked.state.rules.expected_interval
            if tracked.seen is None:
                tracked.seen = now
            due = tracked.seen + interval
            if due > now:
                heapq.heappush(stale, (due, sensor_id))
            elif STALE not in tracked.faults:
                self._fault(tracked, STALE, True, tracked.level_reading, due, step,
                            f"silent since {_at(tracked.seen):%Y-%m-%dT%H:%M:%SZ}, longer "
                            f"than its expected interval of {interval:g} s")
        shelved = self._shelved
        while shelved and shelved[0][0] <= now:
            until, sensor_id = heapq.heappop(shelved)
            tracked = self.sensors.get(sensor_id)
            if tracked is not None and tracked.shelved_until == until:
                self.unshelve(tracked, Cause(actor="monitor", occurred_at=_at(until),
                                             reason="shelving time ran out"), step,
                              expired=True)

    # ---- shelving ----

    def shelve(self, tracked: Tracked, until: float, cause: Cause, step: Step) -> None:
        view = tracked.sensor.view
        step.sensors.add(view.id)
        tracked.sensor.record("shelved", pb.SensorShelved(sensor_id=view.id,
                                                          until=to_timestamp(_at(until))),
                              cause, self.now)
        was_shelved = tracked.shelved_until is not None
        tracked.shelved_until = until
        heapq.heappush(self._shelved, (until, view.id))
        if not was_shelved and tracked.state.level != r.NONE:
            # Its level leaves the warning while it is silenced.
            step.moves.setdefault(tracked.watch_id, []).append(
                (tracked, r.NONE, tracked.level_reading or pb.Reading(sensor_id=view.id)))

    def unshelve(self, tracked: Tracked, cause: Cause, step: Step,
                 expired: bool = False) -> None:
        view = tracked.sensor.view
        step.sensors.add(view.id)
        tracked.sensor.record("unshelved", pb.SensorUnshelved(sensor_id=view.id,
                                                              expired=expired),
                              cause, self.now)
        tracked.shelved_until = None
        if tracked.state.level != r.NONE:
            step.moves.setdefault(tracked.watch_id, []).append(
                (tracked, tracked.state.level,
                 tracked.level_reading or pb.Reading(sensor_id=view.id)))

    # ---- recording ----

    def flush(self, step: Step, actor: str, now: datetime) -> list[Any]:
        """Record the step's transitions; the aggregates to write."""
        changed: list[Any] = []
        for sensor_id, kept in step.late.items():
            tracked = self.sensors[sensor_id]
            tracked.sensor.record("readings_late", pb.SensorReadingsLate(
                sensor_id=sensor_id, readings=kept, count=step.late_count[sensor_id]),
                Cause(actor=actor, occurred_at=now, correlation_id=f"sensor:{sensor_id}",
                      reason="older than the sensor's last applied reading"), now)
            step.sensors.add(sensor_id)
        for watch_id, moves in step.moves.items():
            watch = self._move(watch_id, moves, actor, now)
            if watch is not None:
                step.watches.add(watch_id)
                changed.append(watch)
        changed.extend(self.sensors[s].sensor for s in step.sensors)
        return changed

    def _move(self, watch_id: UUID, moves: list[tuple[Tracked, int, pb.Reading]], actor: str,
              now: datetime) -> HazardWatch | None:
        watch = self.watches.get(watch_id)
        active = watch.active if watch is not None else None
        levels: dict[str, int] = dict(active.sensor_levels) if active is not None else {}
        first = moves[0][0].sensor.view
        segment: dict[str, pb.Reading] = {}

        def emit(last: pb.Reading) -> None:
            nonlocal watch
            at = last.measured_at.ToDatetime(tzinfo=UTC) if last.measured_at.seconds else now
            cause = Cause(actor=actor, occurred_at=at, correlation_id=f"sensor:{last.sensor_id}")
            # The latest few: evidence for people; the levels themselves are all in the event.
            moved_by = list(segment.values())[-MAX_MOVED_BY:]
            responsible = lambda: self.responsible(first.grid_cell, first.hazard)  # noqa: E731
            if watch is None:
                if levels:
                    watch = HazardWatch.open_with(first, dict(levels), moved_by, cause, now,
                                                  responsible)
                    self.watches[watch_id] = watch
            else:
                watch.levels_moved(first, dict(levels), moved_by, cause, now, responsible)
            segment.clear()

        for tracked, level, reading in moves:
            before = bool(levels)
            sensor_id = tracked.sensor.view.id
            if level == r.NONE and segment and set(levels) == {sensor_id}:
                # The warning ends here: what came before it in this call is recorded first,
                # so a warning raised and cleared within one call is never lost.
                emit(next(reversed(segment.values())))
            if level == r.NONE:
                levels.pop(sensor_id, None)
            else:
                levels[sensor_id] = level
            segment.pop(sensor_id, None)
            segment[sensor_id] = reading
            if before and not levels:
                emit(reading)
        if segment:
            emit(moves[-1][2])
        return watch if watch is not None and watch.pending_events else None

    def rollback(self, step: Step, stored: Callable[[UUID], Any]) -> None:
        """The step's write failed: put back what it touched, from the store."""
        for sensor_id in step.added:
            tracked = self.sensors.pop(sensor_id, None)
            if tracked is not None:
                self.by_uuid.pop(tracked.sensor.id, None)
        for sensor_id, state in step.states.items():
            if sensor_id in self.sensors:
                self.sensors[sensor_id].state = state
        for sensor_id, reading in step.level_readings.items():
            if sensor_id in self.sensors:
                self.sensors[sensor_id].level_reading = reading
        for sensor_id in step.sensors:
            tracked = self.sensors.get(sensor_id)
            if tracked is not None:
                fresh = stored(tracked.sensor.id)
                tracked.sensor = fresh
                tracked.faults = {f.kind for f in fresh.view.faults}
                tracked.shelved_until = (fresh.view.shelving.until.ToDatetime(
                    tzinfo=UTC).timestamp() if fresh.view.HasField("shelving") else None)
        for watch_id in {*step.watches, *step.moves}:
            fresh = stored(watch_id)
            if fresh is None:
                self.watches.pop(watch_id, None)
            else:
                self.watches[watch_id] = fresh

    def adopt(self, aggregates: Sequence[Any], step: Step) -> None:
        """Aggregates written by others (acknowledgements, outcomes, compound warnings), as
        part of step (put back with it if its write fails)."""
        for aggregate in aggregates:
            if isinstance(aggregate, HazardWatch):
                self.watches[aggregate.id] = aggregate
                step.watches.add(aggregate.id)
