"""Monitor's domain: sensors with graded thresholds, and the watch each grid cell keeps on
each hazard. Several sensors in one cell on one hazard are one situation: one warning."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.edge import check_enum, check_location, check_name
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, meta_of, stable_id
from lifeline.monitor.v1 import monitor_pb2 as pb

from lifeline_monitor.alarms import effective_rules
from lifeline_monitor.grid import DEFAULT_RESOLUTION, cell_of

L = common_pb2.WarningLevel
COLOURS = (L.WARNING_LEVEL_BLUE, L.WARNING_LEVEL_YELLOW, L.WARNING_LEVEL_ORANGE,
           L.WARNING_LEVEL_RED)


def level_name(level: int) -> str:
    return common_pb2.WarningLevel.Name(cast(Any, level)).removeprefix("WARNING_LEVEL_")


def grid_cell_of(location: common_pb2.GeoPoint, resolution: int = DEFAULT_RESOLUTION) -> str:
    """The H3 cell (at the grid's resolution, 8 unless configured) a point falls in."""
    return cell_of(location, resolution)


def sensor_id_of(sensor_id: str) -> UUID:
    return stable_id("sensor", sensor_id)


def watch_id_of(grid_cell: str, hazard: str) -> UUID:
    return stable_id("watch", grid_cell, hazard)


def validate_sensor(req: pb.RegisterSensorRequest) -> None:
    for field in ("id", "kind", "hazard", "unit_of_measure"):
        if not getattr(req, field).strip():
            raise InvalidArgument(field, "is required")
    if not req.HasField("location"):
        raise InvalidArgument("location", "is required")
    check_location("location", req.location)
    check_enum("direction", pb.Direction, req.direction)
    check_name("hazard", req.hazard)
    if req.grid_cell:
        check_name("grid_cell", req.grid_cell)
    t = req.thresholds
    values = [t.blue, t.yellow, t.orange, t.red]
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument("thresholds", "every threshold must be a finite number")
    ordered = values if req.direction == pb.DIRECTION_HIGHER_IS_WORSE else values[::-1]
    if any(a >= b for a, b in itertools.pairwise(ordered)):
        worse = "rise" if req.direction == pb.DIRECTION_HIGHER_IS_WORSE else "fall"
        raise InvalidArgument("thresholds", f"must {worse} strictly from blue to red")


class Sensor(ProtoAggregate):
    EVENT_TYPE = pb.SensorEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        if field == "registered":
            self.view = pb.Sensor()
            self.view.CopyFrom(event.sensor)
        elif field == "level_changed":  # histories from before the alarm engine
            self.view.level = event.level
            self.view.level_reading.CopyFrom(event.reading)
        elif field == "fault_raised":
            self.view.faults.append(pb.SensorFault(
                kind=event.kind, since=meta_of(wrapper).occurred_at, reading=event.reading,
                detail=event.detail))
        elif field == "fault_cleared":
            kept = [f for f in self.view.faults if f.kind != event.kind]
            del self.view.faults[:]
            self.view.faults.extend(kept)
        elif field == "shelved":
            meta = meta_of(wrapper)
            self.view.shelving.CopyFrom(pb.Shelving(since=meta.occurred_at, until=event.until,
                                                    reason=meta.reason, by=meta.actor))
        elif field == "unshelved":
            self.view.ClearField("shelving")

    @classmethod
    def register(cls, req: pb.RegisterSensorRequest, cause: Cause, now: datetime) -> Sensor:
        validate_sensor(req)
        sensor = pb.Sensor(id=req.id, kind=req.kind, hazard=req.hazard, location=req.location,
                           grid_cell=req.grid_cell or grid_cell_of(req.location),
                           unit_of_measure=req.unit_of_measure, thresholds=req.thresholds,
                           direction=req.direction, level=L.WARNING_LEVEL_NONE,
                           rules=effective_rules(req), owner=req.owner)
        return cls.start(sensor_id_of(req.id), "registered", pb.SensorRegistered(sensor=sensor),
                         cause, now)

    def level_for(self, value: float) -> int:
        t, level = self.view.thresholds, L.WARNING_LEVEL_NONE
        higher = self.view.direction == pb.DIRECTION_HIGHER_IS_WORSE
        for colour, limit in zip(COLOURS, (t.blue, t.yellow, t.orange, t.red), strict=True):
            if (value >= limit) if higher else (value <= limit):
                level = colour
        return level

    def observe(self, reading: pb.Reading, cause: Cause, now: datetime) -> bool:
        """Take a reading; True when it moved the sensor to another colour."""
        level = self.level_for(reading.value)
        if level == self.view.level:
            return False
        self.record("level_changed", pb.SensorLevelChanged(sensor_id=self.view.id, level=level,  # type: ignore[arg-type]
                                                           reading=reading), cause, now)
        return True


class HazardWatch(ProtoAggregate):
    """One grid cell's watch on one hazard: raises, updates and clears its warnings."""

    EVENT_TYPE = pb.WarningEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        at = meta_of(wrapper).occurred_at
        if field == "raised":
            self.episodes = getattr(self, "episodes", 0) + 1
            self.warning = pb.Warning(
                id=event.warning_id, hazard=event.hazard, grid_cell=event.grid_cell,
                location=event.location, level=event.level, status=pb.WARNING_STATUS_ACTIVE,
                sensor_levels=event.sensor_levels, raised_at=at, updated_at=at,
                evidence=event.evidence, responsible=event.responsible,
                coupled_rule=event.coupled_rule, sources=event.sources)
            #: Every sensor that stood behind each warning (its outcome counts for them).
            self.contributors: dict[str, set[str]] = getattr(self, "contributors", {})
            self.contributors[event.warning_id] = set(event.sensor_levels)
            return
        w = self.warning
        w.updated_at.CopyFrom(at)
        if field == "updated":
            w.level = event.level
            w.sensor_levels.clear()
            w.sensor_levels.update(event.sensor_levels)
            w.evidence.CopyFrom(event.evidence)
            w.sources[:] = event.sources
            self.contributors[w.id].update(event.sensor_levels)
        elif field == "acknowledged":
            w.status = pb.WARNING_STATUS_ACKNOWLEDGED
            w.acknowledged_by = meta_of(wrapper).actor
            #: The colour acknowledged: a worse one needs acknowledging again.
            self.acknowledged_level = w.level
        elif field == "cleared":
            w.status = pb.WARNING_STATUS_CLEARED
            w.level = L.WARNING_LEVEL_NONE
            w.sensor_levels.clear()
            w.cleared_at.CopyFrom(at)

    @property
    def active(self) -> pb.Warning | None:
        warning = getattr(self, "warning", None)
        return warning if warning and warning.status != pb.WARNING_STATUS_CLEARED else None

    @classmethod
    def open(cls, sensor: pb.Sensor, level: int, reading: pb.Reading, cause: Cause,
             now: datetime, responsible: Callable[[], pb.Responsible] | None = None
             ) -> HazardWatch:
        watch_id = watch_id_of(sensor.grid_cell, sensor.hazard)
        raised = cls._raised(sensor, 1, level, reading, responsible)
        return cls.start(watch_id, "raised", raised, cause, now)

    @staticmethod
    def _raised(sensor: pb.Sensor, episode: int, level: int, reading: pb.Reading,
                responsible: Callable[[], pb.Responsible] | None) -> pb.WarningRaised:
        return pb.WarningRaised(
            warning_id=f"{sensor.grid_cell}/{sensor.hazard}/{episode}", hazard=sensor.hazard,
            grid_cell=sensor.grid_cell, location=sensor.location, level=level,  # type: ignore[arg-type]
            evidence=reading, sensor_levels={sensor.id: level},  # type: ignore[dict-item]
            responsible=responsible() if responsible else None)

    @classmethod
    def open_with(cls, sensor: pb.Sensor, levels: dict[str, int], moved_by: Sequence[pb.Reading],
                  cause: Cause, now: datetime,
                  responsible: Callable[[], pb.Responsible] | None = None) -> HazardWatch:
        """The cell's first warning on the hazard, raised by several sensors at once."""
        raised = cls._raised_with(sensor, 1, levels, moved_by, responsible)
        return cls.start(watch_id_of(sensor.grid_cell, sensor.hazard), "raised", raised, cause,
                         now)

    @classmethod
    def _raised_with(cls, sensor: pb.Sensor, episode: int, levels: dict[str, int],
                     moved_by: Sequence[pb.Reading],
                     responsible: Callable[[], pb.Responsible] | None) -> pb.WarningRaised:
        raised = cls._raised(sensor, episode, max(levels.values()), moved_by[-1], responsible)
        raised.sensor_levels.clear()
        raised.sensor_levels.update(levels)  # type: ignore[arg-type]
        raised.moved_by.extend(moved_by)
        return raised

    def levels_moved(self, sensor: pb.Sensor, levels: dict[str, int],
                     moved_by: Sequence[pb.Reading], cause: Cause, now: datetime,
                     responsible: Callable[[], pb.Responsible] | None = None) -> None:
        """Sensors of this cell moved in one step; `levels` holds every sensor now past a
        threshold. One event: raised, updated or cleared, naming the readings that moved."""
        active = self.active
        if active is None:
            if levels:
                self.record("raised", self._raised_with(sensor, self.episodes + 1, levels,
                                                        moved_by, responsible), cause, now)
            return
        if not levels:
            self.record("cleared", pb.WarningCleared(warning_id=active.id, moved_by=moved_by),
                        cause, now)
        elif dict(active.sensor_levels) != levels:
            self.record("updated", pb.WarningUpdated(
                warning_id=active.id, level=max(levels.values()), evidence=moved_by[-1],  # type: ignore[arg-type]
                sensor_levels=levels, moved_by=moved_by), cause, now)  # type: ignore[arg-type]

    def sensor_moved(self, sensor: pb.Sensor, level: int, reading: pb.Reading, cause: Cause,
                     now: datetime, responsible: Callable[[], pb.Responsible] | None = None
                     ) -> None:
        """A sensor in this cell changed colour: raise, update or clear the warning.
        responsible() says whom a new warning reaches (asked only when one is raised)."""
        active = self.active
        if active is None:
            if level != L.WARNING_LEVEL_NONE:
                raised = self._raised(sensor, self.episodes + 1, level, reading, responsible)
                self.record("raised", raised, cause, now)
            return
        levels = dict(active.sensor_levels)
        if level == L.WARNING_LEVEL_NONE:
            levels.pop(sensor.id, None)
        else:
            levels[sensor.id] = level  # type: ignore[assignment]
        if not levels:
            self.record("cleared", pb.WarningCleared(warning_id=active.id), cause, now)
            return
        self.record("updated", pb.WarningUpdated(warning_id=active.id, level=max(levels.values()),
                                                 evidence=reading, sensor_levels=levels),
                    cause, now)

    def acknowledge(self, warning_id: str, cause: Cause, now: datetime) -> None:
        active = self.active
        if active is None or active.id != warning_id:
            raise RuleViolation("acknowledge-active-warning",
                                f"warning {warning_id} is no longer active (it was cleared)")
        # Acknowledged at a milder colour, an escalated warning is acknowledged again (its
        # escalation chain restarted at the worse colour).
        if active.status != pb.WARNING_STATUS_ACKNOWLEDGED or \
                active.level > getattr(self, "acknowledged_level", active.level):
            self.record("acknowledged", pb.WarningAcknowledged(warning_id=warning_id), cause, now)

    @classmethod
    def open_compound(cls, grid_cell: str, hazard: str, rule: str, level: int,
                      sources: Sequence[str], location: common_pb2.GeoPoint,
                      responsible: pb.Responsible, cause: Cause, now: datetime) -> HazardWatch:
        """A coupled-risk rule's conditions hold in a cell: its compound warning."""
        raised = cls._compound(grid_cell, hazard, 1, rule, level, sources, location,
                               responsible)
        return cls.start(watch_id_of(grid_cell, hazard), "raised", raised, cause, now)

    @staticmethod
    def _compound(grid_cell: str, hazard: str, episode: int, rule: str, level: int,
                  sources: Sequence[str], location: common_pb2.GeoPoint,
                  responsible: pb.Responsible) -> pb.WarningRaised:
        return pb.WarningRaised(
            warning_id=f"{grid_cell}/{hazard}/{episode}", hazard=hazard, grid_cell=grid_cell,
            location=location, level=level, coupled_rule=rule, sources=sources,  # type: ignore[arg-type]
            responsible=responsible)

    def compound_moved(self, rule: str, level: int, sources: Sequence[str],
                       location: common_pb2.GeoPoint, responsible: Callable[[], pb.Responsible],
                       cause: Cause, now: datetime) -> bool:
        """The rule's picture changed: raise, update (level or sources) or clear (level
        NONE) the compound warning. True when something was recorded."""
        active = self.active
        if active is None:
            if level == L.WARNING_LEVEL_NONE:
                return False
            grid_cell, hazard = self.warning.grid_cell, self.warning.hazard
            self.record("raised", self._compound(grid_cell, hazard, self.episodes + 1, rule,
                                                 level, sources, location, responsible()),
                        cause, now)
            return True
        if level == L.WARNING_LEVEL_NONE:
            self.record("cleared", pb.WarningCleared(warning_id=active.id), cause, now)
            return True
        if level == active.level and list(sources) == list(active.sources):
            return False
        self.record("updated", pb.WarningUpdated(warning_id=active.id, level=level,  # type: ignore[arg-type]
                                                 sources=sources), cause, now)
        return True

    def sensors_behind(self, warning_id: str) -> list[str]:
        """Every sensor that stood behind the warning during its life."""
        return sorted(getattr(self, "contributors", {}).get(warning_id, ()))
