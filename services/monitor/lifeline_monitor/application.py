"""Monitor's use cases: register sensors, take readings, acknowledge warnings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from eventsourcing.persistence import Recording
from lifeline.common.v1 import common_pb2
from lifeline.errors import AlreadyExists, InvalidArgument, NotFound
from lifeline.events import Cause, ProtoAggregate, from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow

from lifeline_monitor import grid, outcomes
from lifeline_monitor.domain import HazardWatch, Sensor, level_name, sensor_id_of, watch_id_of

MAX_READINGS_PER_CALL = 10_000


class MonitorApp(ServiceApplication):
    name = "monitor"
    #: H3 resolution of the grid (Settings.grid_resolution, set by bootstrap).
    grid_resolution = grid.DEFAULT_RESOLUTION

    def register_sensor(self, req: pb.RegisterSensorRequest, cause: Cause, now: datetime
                        ) -> tuple[pb.Sensor, list[Recording]]:
        if self.find(Sensor, sensor_id_of(req.id)) is not None:
            raise AlreadyExists("sensor", req.id)
        sensor = Sensor.register(grid.placed(req, self.grid_resolution), cause, now)
        return sensor.view, self.record(sensor)

    def ingest(self, readings: Sequence[pb.Reading], actor: str, now: datetime
               ) -> tuple[list[pb.Warning], list[Recording]]:
        """Take readings in order, all or none; return the warnings they raised or moved."""
        if len(readings) > MAX_READINGS_PER_CALL:
            raise InvalidArgument("readings", f"at most {MAX_READINGS_PER_CALL} per call")
        sensors: dict[str, Sensor] = {}
        for index, reading in enumerate(readings):
            if not math.isfinite(reading.value):
                raise InvalidArgument(f"readings[{index}].value", "must be a finite number")
            if reading.sensor_id not in sensors:
                sensor = self.find(Sensor, sensor_id_of(reading.sensor_id))
                if sensor is None:
                    raise InvalidArgument(f"readings[{index}].sensor_id",
                                          f"no sensor {reading.sensor_id!r} is registered")
                sensors[reading.sensor_id] = sensor
        watches: dict[str, HazardWatch] = {}
        for reading in readings:
            sensor = sensors[reading.sensor_id]
            when = from_timestamp(reading.measured_at) if reading.HasField("measured_at") else now
            cause = Cause(actor=actor, occurred_at=when,
                          correlation_id=f"sensor:{sensor.view.id}")
            if sensor.observe(reading, cause, now):
                self._move_watch(watches, sensor.view, reading, cause, now)
        moved = [w.warning for w in watches.values() if w.pending_events]
        return moved, self.record(*sensors.values(), *watches.values())

    def _move_watch(self, watches: dict[str, HazardWatch], sensor: pb.Sensor,
                    reading: pb.Reading, cause: Cause, now: datetime) -> None:
        key = f"{sensor.grid_cell}|{sensor.hazard}"
        watch = watches.get(key) or self.find(HazardWatch,
                                              watch_id_of(sensor.grid_cell, sensor.hazard))

        def responsible() -> pb.Responsible:
            return grid.responsible_for(self, sensor.grid_cell, sensor.hazard)

        if watch is None:
            if sensor.level == common_pb2.WARNING_LEVEL_NONE:
                return
            watch = HazardWatch.open(sensor, sensor.level, reading, cause, now, responsible)
        else:
            watch.sensor_moved(sensor, sensor.level, reading, cause, now, responsible)
        watches[key] = watch

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
    return []
