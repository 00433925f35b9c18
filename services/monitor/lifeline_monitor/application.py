"""Monitor's use cases: register sensors, take readings, acknowledge warnings."""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Recording
from lifeline import names
from lifeline import settings as environment
from lifeline.errors import AlreadyExists, InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate
from lifeline.idempotency import Attempt
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.repository import CopyingRepository
from lifeline.store import ServiceApplication, Taking
from lifeline.views import ViewRow

from lifeline_monitor import grid, outcomes, rosters
from lifeline_monitor.alarms import MAX_SHELVING
from lifeline_monitor.cap import model as cap_model
from lifeline_monitor.domain import HazardWatch, Sensor, level_name, watch_id_of
from lifeline_monitor.engine import Columns, Engine, Step, Tracked
from lifeline_monitor.escalation import wiring

MAX_READINGS_PER_CALL = 10_000


class MonitorApp(ServiceApplication):
    name = "monitor"
    #: H3 resolution of the grid (Settings.grid_resolution, set by bootstrap).
    grid_resolution = grid.DEFAULT_RESOLUTION

    def __init__(self, database_url: str, env: dict[str, Any] | None = None,
                 observed: bool | None = None) -> None:
        super().__init__(database_url, env)
        if observed is None:
            observed = environment.load().field_clock == "observed"
        self.engine = Engine(observed, lambda cell, hazard: grid.responsible_for(self, cell,
                                                                                 hazard))
        # Held from deciding to committing (`writing`): the engine's memory is what was
        # committed.
        self._engine_lock = threading.RLock()
        self._local = threading.local()
        self.engine.fold(self._rebuild())

    # ---- the alarm engine's transactions ----

    def construct_repository(self) -> CopyingRepository:
        repository = EngineRepository.taking_over(super().construct_repository())
        repository.app = self
        return repository

    def _rebuild(self) -> list[Any]:
        """Every sensor and watch, folded from the store (on start)."""
        topics = [f"{cls.__module__}:{cls.__qualname__}.{name}" for cls in (Sensor, HazardWatch)
                  for name in ("Started", "Recorded")]
        found: dict[UUID, Any] = {}
        position = 0
        while True:
            page = self.recorder.select_notifications(position + 1, 1000, topics=topics)
            if not page:
                break
            for notification in page:
                event: Any = self.mapper.to_domain_event(notification)
                found[event.originator_id] = event.mutate(found.get(event.originator_id))
            position = page[-1].id
        return list(found.values())

    def _stored(self, aggregate_id: UUID) -> Any:
        try:
            return self.repository.stored(aggregate_id)  # type: ignore[attr-defined]
        except AggregateNotFoundError:
            return None

    @contextlib.contextmanager
    def writing(self) -> Iterator[Step]:
        """Decide, write and commit in one block under the engine lock, so the engine's
        memory is what was committed: a failure anywhere in the block puts back what its
        step touched. A block inside another (a use case inside a caller's command, whose
        answer is written with it) is part of the outer one's step."""
        with self._engine_lock:
            outer: Step | None = getattr(self._local, "step", None)
            if outer is not None:
                yield outer
                return
            step = self._local.step = Step()
            try:
                yield step
            except BaseException:
                self.engine.rollback(step, self._stored)
                raise
            finally:
                self._local.step = None

    def record(self, *aggregates: Aggregate | None, taking: Taking | None = None,
               attempt: Attempt | None = None) -> list[Recording]:
        with self.writing() as step:
            if taking is None and not any(a is not None and a.pending_events
                                            for a in aggregates):
                return []  # a step that changed nothing writes nothing
            recordings = super().record(*aggregates, taking=taking, attempt=attempt)
            self.engine.adopt(aggregates, step)
            return recordings

    # ---- use cases ----

    def register_sensor(self, req: pb.RegisterSensorRequest, cause: Cause, now: datetime
                        ) -> tuple[pb.Sensor, list[Recording]]:
        with self.writing() as step:
            if req.id in self.engine.sensors:
                raise AlreadyExists("sensor", req.id)
            sensor = Sensor.register(grid.placed(req, self.grid_resolution), cause, now)
            self.engine.add(sensor, step)
            return sensor.view, self.record(sensor)

    def sensor_names(self) -> dict[int, set[str]]:
        """The hazards registered sensors watch (lifeline.names)."""
        return {names.HAZARD: {t.sensor.view.hazard for t in list(self.engine.sensors.values())}}

    def register_sensors(self, reqs: Sequence[pb.RegisterSensorRequest], cause: Cause,
                         now: datetime) -> tuple[pb.RegisterSensorsResponse, list[Recording]]:
        """Many at once, all or none; those already registered are left as they are."""
        answer = pb.RegisterSensorsResponse()
        added: list[Sensor] = []
        with self.writing() as step:
            seen: set[str] = set()
            for index, req in enumerate(reqs):
                if req.id in self.engine.sensors or req.id in seen:
                    answer.existing.append(req.id)
                    continue
                try:
                    sensor = Sensor.register(grid.placed(req, self.grid_resolution), cause, now)
                except InvalidArgument as error:
                    problem = str(error).removeprefix(f"{error.field}: ")
                    raise InvalidArgument(f"sensors[{index}].{error.field}", problem) from None
                seen.add(req.id)
                added.append(sensor)
            for sensor in added:
                self.engine.add(sensor, step)
            answer.registered = len(added)
            return answer, self.record(*added)

    def ingest(self, readings: Sequence[pb.Reading], actor: str, now: datetime,
               columns: Columns | None = None
               ) -> tuple[pb.IngestReadingsResponse, list[Recording]]:
        """Take readings in order, all or none; answer with the warnings they raised or
        moved and the faults they raised or cleared. columns: as the edge read them."""
        if len(readings) > MAX_READINGS_PER_CALL:
            raise InvalidArgument("readings", f"at most {MAX_READINGS_PER_CALL} per call")
        with self.writing() as step:
            self.engine.ingest(readings, step, now, columns)
            self.engine.expire(now, step)
            changed = self.engine.flush(step, actor, now)
            answer = pb.IngestReadingsResponse(
                accepted=len(readings), late=sum(step.late_count.values()),
                bad_quality=step.bad,
                warnings=[w.warning for w in changed if isinstance(w, HazardWatch)],
                faults=step.faults)
            return answer, self.record(*changed)

    def expire(self, actor: str, now: datetime) -> tuple[int, list[Recording]]:
        """Time passed: stale sensors' faults, shelving that ran out."""
        with self.writing() as step:
            self.engine.expire(now, step)
            changed = self.engine.flush(step, actor, now)
            return len(changed), self.record(*changed)

    def shelve(self, sensor_id: str, seconds: float, cause: Cause, now: datetime
               ) -> tuple[pb.Sensor, list[Recording]]:
        if not cause.reason.strip():
            raise InvalidArgument("reason", "say why the sensor is shelved")
        if not 0 < seconds <= MAX_SHELVING:
            raise InvalidArgument("duration", f"must be more than 0 and at most "
                                              f"{MAX_SHELVING // 3600} h")
        with self.writing() as step:
            tracked = self._tracked(sensor_id)
            until = cause.occurred_at.timestamp() + seconds
            self.engine.now = now
            self.engine.shelve(tracked, until, cause, step)
            changed = self.engine.flush(step, cause.actor, now)
            return tracked.sensor.view, self.record(*changed)

    def unshelve(self, sensor_id: str, cause: Cause, now: datetime
                 ) -> tuple[pb.Sensor, list[Recording]]:
        with self.writing() as step:
            tracked = self._tracked(sensor_id)
            if tracked.shelved_until is None:
                raise RuleViolation("unshelve-shelved", f"sensor {sensor_id} is not shelved")
            self.engine.now = now
            self.engine.unshelve(tracked, cause, step)
            changed = self.engine.flush(step, cause.actor, now)
            return tracked.sensor.view, self.record(*changed)

    def _tracked(self, sensor_id: str) -> Tracked:
        tracked = self.engine.sensors.get(sensor_id)
        if tracked is None:
            raise NotFound("sensor", sensor_id)
        return tracked

    def live(self, sensor: pb.Sensor) -> pb.Sensor:
        """A copy of a sensor's view with its level as the engine holds it now (the view
        may be the engine's own message)."""
        shown = pb.Sensor()
        shown.CopyFrom(sensor)
        tracked = self.engine.sensors.get(sensor.id)
        if tracked is not None:
            shown.level = tracked.state.level  # type: ignore[assignment]
            if tracked.level_reading is not None:
                shown.level_reading.CopyFrom(tracked.level_reading)
        return shown

    def acknowledge(self, warning_id: str, cause: Cause, now: datetime
                    ) -> tuple[pb.Warning, list[Recording]]:
        parts = warning_id.split("/")
        if len(parts) != 3:
            raise InvalidArgument("id", "a warning id looks like <grid cell>/<hazard>/<number>")
        watch = self.find(HazardWatch, watch_id_of(parts[0], parts[1]))
        if watch is None:
            raise NotFound("warning", warning_id)
        watch.acknowledge(warning_id, cause, now)
        return watch.warning, self.record(watch)


class EngineRepository(CopyingRepository):
    """The application's repository, answering for sensors and watches from the engine's
    memory (a copy, as of the last commit) instead of reading their events again."""

    app: MonitorApp

    def get(self, aggregate_id: Any, *args: Any, **kwargs: Any) -> Any:
        app = self.app
        engine = getattr(app, "engine", None)
        if engine is not None and not args and kwargs.get("version") is None:
            with app._engine_lock:
                live: Any = engine.watches.get(aggregate_id)
                if live is None and aggregate_id in engine.by_uuid:
                    live = engine.sensors[engine.by_uuid[aggregate_id]].sensor
                if live is not None:
                    return copy.deepcopy(live)
        return super().get(aggregate_id, *args, **kwargs)

    def stored(self, aggregate_id: Any) -> Any:
        """From the store, never from the engine."""
        return super().get(aggregate_id)


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, Sensor):
        s = aggregate.view
        return [ViewRow("sensor", s.id, s, status=level_name(s.level), category=s.kind,
                        lat=s.location.lat, lon=s.location.lon)]
    if isinstance(aggregate, HazardWatch):
        w = aggregate.warning
        return [ViewRow("warning", w.id, w, status=pb.WarningStatus.Name(w.status),
                        category=w.hazard, lat=w.location.lat, lon=w.location.lon)]
    if isinstance(aggregate, outcomes.Outcome):
        return outcomes.rows_for(aggregate)
    if isinstance(aggregate, cap_model.CapAlertAggregate):
        return cap_model.rows_for(aggregate)
    if isinstance(aggregate, rosters.DutyPost):
        return rosters.rows_for(aggregate)
    return wiring.rows_for(aggregate)
