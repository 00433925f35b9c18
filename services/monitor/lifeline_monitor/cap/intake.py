"""Taking another agency's alert in: it becomes a warning source on every cell its area
covers, one key in each cell watch's `sensor_levels`, `cap:<sender>/<identifier>` of the
first alert of its chain; later alerts that reference it move it (`Update`) or take it
away (`Cancel`). Importing the same alert again changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifeline.common.v1 import common_pb2
from lifeline.errors import RuleViolation
from lifeline.events import Cause, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication

from lifeline_monitor import grid
from lifeline_monitor.cap.decode import Incoming
from lifeline_monitor.cap.model import CapAlertAggregate, alert_id_of
from lifeline_monitor.domain import HazardWatch, watch_id_of

L = common_pb2.WarningLevel
SOURCE_PREFIX = "cap:"


def import_alert(app: ServiceApplication, incoming: Incoming, resolution: int, cause: Cause,
                 now: datetime) -> tuple[pb.ImportCapAlertResponse, list[Any]]:
    """The alert's effect on the cells' watches; (answer, aggregates to record)."""
    answer = pb.ImportCapAlertResponse(identifier=incoming.identifier, sender=incoming.sender,
                                       msg_type=incoming.msg_type)
    existing = app.find(CapAlertAggregate, alert_id_of(incoming.sender, incoming.identifier))
    if existing is not None:
        answer.duplicate = True
        answer.grid_cells.extend(existing.imported.grid_cells)
        return answer, []
    earlier = [a for a in (app.find(CapAlertAggregate, alert_id_of(s, i))
                           for s, i in incoming.references) if a is not None]
    previous = max(earlier, key=lambda a: a.imported.meta.occurred_at.seconds, default=None)
    if incoming.msg_type != "Alert" and previous is None and incoming.msg_type == "Cancel":
        raise RuleViolation("cap-cancel-known-alert", "a Cancel must reference an alert "
                                                      "imported before")
    if previous is not None:
        source = previous.imported.source
        hazard = incoming.hazard or previous.imported.hazard
        before = {(c, previous.imported.hazard) for c in previous.imported.grid_cells}
    else:
        source = f"{SOURCE_PREFIX}{incoming.sender}/{incoming.identifier}"[:128]
        hazard, before = incoming.hazard, set()
    after = set() if incoming.msg_type == "Cancel" else {(c, hazard) for c in incoming.cells}
    level = L.WARNING_LEVEL_NONE if incoming.msg_type == "Cancel" else incoming.level
    changed: list[Any] = []
    for cell, cell_hazard in sorted(before | after):
        watch = app.find(HazardWatch, watch_id_of(cell, cell_hazard))
        moved = watch_move(watch, source, cell, cell_hazard,
                           level if (cell, cell_hazard) in after else L.WARNING_LEVEL_NONE,
                           incoming, cause, now, app)
        if moved is not None:
            changed.append(moved)
            answer.warning_ids.append(moved.warning.id)
    record = pb.CapAlertImported(
        identifier=incoming.identifier, sender=incoming.sender, msg_type=incoming.msg_type,
        hazard=hazard, level=level, grid_cells=sorted(c for c, _ in after),  # type: ignore[arg-type]
        references=[f"{s},{i}" for s, i in incoming.references], headline=incoming.headline,
        source=source)
    if incoming.expires is not None:
        record.expires.CopyFrom(to_timestamp(incoming.expires))
    changed.append(CapAlertAggregate.start(alert_id_of(incoming.sender, incoming.identifier),
                                           "imported", record, cause, now))
    answer.grid_cells.extend(record.grid_cells)
    return answer, changed


def watch_move(watch: HazardWatch | None, source: str, cell: str, hazard: str, level: int,
               incoming: Incoming, cause: Cause, now: datetime, app: ServiceApplication
               ) -> HazardWatch | None:
    """Put the alert's colour on the cell's watch (NONE takes it away); the watch if it
    recorded something."""
    centre = grid.centre_of(cell)
    sensor = pb.Sensor(id=source, hazard=hazard, grid_cell=cell, location=centre)
    reading = pb.Reading(sensor_id=source, value=float(level),
                         measured_at=to_timestamp(incoming.sent))
    step = Cause(actor=cause.actor, via=cause.via, occurred_at=cause.occurred_at,
                 reason=f"CAP {incoming.msg_type} {incoming.identifier} from "
                        f"{incoming.sender}"[:1000],
                 correlation_id=source[:128])

    def responsible() -> pb.Responsible:
        return grid.responsible_for(app, cell, hazard)

    if watch is None:
        if level == L.WARNING_LEVEL_NONE:
            return None
        return HazardWatch.open(sensor, level, reading, step, now, responsible)
    active = watch.active
    standing = active.sensor_levels.get(source) if active is not None else None
    if standing == level or (standing is None and level == L.WARNING_LEVEL_NONE):
        return None
    watch.sensor_moved(sensor, level, reading, step, now, responsible)
    return watch
