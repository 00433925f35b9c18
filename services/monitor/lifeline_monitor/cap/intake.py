"""Taking another agency's alert in, and the duty party's decisions on one the grid could
not place.

An alert is placed on the cells of the city's grid its areas reach: the grid cells its
polygons, circles and H3 geocodes cover (a shape too wide to fill: the grid cells whose
centres lie in it), and every cell of the districts its
administrative geocodes name. There it is a warning source, one key in each cell watch's
`sensor_levels` (`cap:<sender>/<identifier>` of the first alert of its chain), at each
info's colour for that info's hazard. An alert that reaches no cell (only an `areaDesc`,
or geocodes the city does not know) is kept *unplaced* and notified to the city's duty
party, who places it on districts or cells or dismisses it. A later alert that references
it moves it (`Update`: to its own area, or where its chain stood when it names no place)
or takes it away (`Cancel`). Importing the same alert again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate, from_timestamp, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication

from lifeline_monitor import grid
from lifeline_monitor.cap import geocodes
from lifeline_monitor.cap.decode import Incoming, Info
from lifeline_monitor.cap.geometry import MAX_CELLS, inside
from lifeline_monitor.cap.model import CapAlertAggregate, alert_id_of
from lifeline_monitor.domain import HazardWatch, watch_id_of
from lifeline_monitor.escalation.model import Notification, notification_id_of

L = common_pb2.WarningLevel
S = pb.CapAlertStatus
SOURCE_PREFIX = "cap:"
#: The policy an unplaced alert's notification names (it has no escalation chain).
UNPLACED_POLICY = "cap-unplaced"


def placement(index: pb.GridIndex | None, incoming: Incoming) -> list[list[str]]:
    """Each info's cells of the city's grid: the grid cells its areas' shapes cover and
    the cells of the districts its geocodes name."""
    if index is None:
        return [[] for _ in incoming.infos]
    known = {c for d in index.districts for c in d.cells}
    ordered = sorted(known)
    placed = []
    for info in incoming.infos:
        cells: dict[str, None] = {}
        for area in info.areas:
            cells.update(dict.fromkeys(c for c in area.cells if c in known))
            cells.update(dict.fromkeys(sorted(inside(area.wide, ordered))))
            for district in geocodes.districts_named(index, area.geocodes):
                cells.update(dict.fromkeys(district.cells))
        placed.append(sorted(cells))
    return placed


def folded(parts: Iterable[tuple[str, int, Iterable[str]]]) -> list[pb.CapTarget]:
    """(hazard, colour, cells) folded into targets: the worst colour per cell and hazard."""
    levels: dict[tuple[str, str], int] = {}
    for hazard, level, cells in parts:
        for cell in cells:
            levels[cell, hazard] = max(level, levels.get((cell, hazard), L.WARNING_LEVEL_NONE))
    grouped: dict[tuple[str, int], list[str]] = {}
    for (cell, hazard), level in sorted(levels.items()):
        grouped.setdefault((hazard, level), []).append(cell)
    return [pb.CapTarget(hazard=h, level=lv, grid_cells=c)  # type: ignore[arg-type]
            for (h, lv), c in sorted(grouped.items())]


def _cells(targets: Iterable[pb.CapTarget]) -> list[str]:
    return sorted({c for t in targets for c in t.grid_cells})


def import_alert(app: ServiceApplication, incoming: Incoming, resolution: int, cause: Cause,
                 now: datetime) -> tuple[pb.ImportCapAlertResponse, list[Any]]:
    """The alert's effect on the cells' watches (or on the duty party's inbox); (answer,
    aggregates to record)."""
    answer = pb.ImportCapAlertResponse(identifier=incoming.identifier, sender=incoming.sender,
                                       msg_type=incoming.msg_type)
    existing = app.find(CapAlertAggregate, alert_id_of(incoming.sender, incoming.identifier))
    if existing is not None:
        answer.duplicate = True
        answer.grid_cells.extend(_cells(existing.view.targets))
        answer.unplaced = existing.imported.unplaced
        answer.duty_party = existing.imported.duty_party
        return answer, []
    earlier = [a for a in (app.find(CapAlertAggregate, alert_id_of(s, i))
                           for s, i in incoming.references) if a is not None]
    # The chain's current alert: one no later alert took the place of, else the latest.
    previous = max(earlier, key=lambda a: (not a.view.superseded_by,
                                           from_timestamp(a.view.sent)), default=None)
    if previous is None and incoming.msg_type == "Cancel":
        raise RuleViolation("cap-cancel-known-alert", "a Cancel must reference an alert "
                                                      "imported before")
    index = grid.grid_index(app)
    placed = placement(index, incoming)
    own = folded((i.hazard, i.level, cells) for i, cells in zip(incoming.infos, placed,
                                                                    strict=True))
    standing = previous is not None and previous.status == S.CAP_ALERT_STATUS_PLACED
    before = list(previous.view.targets) if previous is not None and standing else []
    if incoming.msg_type == "Cancel":
        after: list[pb.CapTarget] = []
    elif not own and before:  # an Update that names no place keeps its chain's cells
        after = folded((i.hazard, i.level, _cells(before)) for i in incoming.infos)
    else:
        after = own
    unplaced = incoming.msg_type != "Cancel" and not after
    source = previous.view.source if previous is not None else \
        f"{SOURCE_PREFIX}{incoming.sender}/{incoming.identifier}"[:128]
    duty = (previous.view.duty_party if previous is not None and previous.view.duty_party
            else geocodes.duty_party(index))
    reason = f"CAP {incoming.msg_type} {incoming.identifier} from {incoming.sender}"
    changed = _moved(app, source, before, after, incoming.sent, reason, cause, now, answer)
    record = pb.CapAlertImported(
        identifier=incoming.identifier, sender=incoming.sender, msg_type=incoming.msg_type,
        hazard=incoming.hazard or (previous.view.hazard if previous is not None else ""),
        level=L.WARNING_LEVEL_NONE if incoming.msg_type == "Cancel" else incoming.level,  # type: ignore[arg-type]
        grid_cells=_cells(after), targets=after, unplaced=unplaced,
        duty_party=duty if unplaced else "",
        references=[f"{s},{i}" for s, i in incoming.references], headline=incoming.headline,
        source=source, infos=[_info(i, cells) for i, cells in zip(incoming.infos, placed,
                                                                   strict=True)])
    if incoming.expires is not None:
        record.expires.CopyFrom(to_timestamp(incoming.expires))
    if previous is not None:
        previous.record("superseded", pb.CapAlertSuperseded(
            identifier=incoming.identifier, msg_type=incoming.msg_type), cause, now)
        changed.append(previous)
    changed.extend(_duty_notified(app, record, source, duty, cause, now))
    changed.append(CapAlertAggregate.start(alert_id_of(incoming.sender, incoming.identifier),
                                           "imported", record, cause, now))
    answer.grid_cells.extend(record.grid_cells)
    answer.unplaced, answer.duty_party = unplaced, record.duty_party
    return answer, changed


def _info(info: Info, cells: list[str]) -> pb.CapInfo:
    return pb.CapInfo(language=info.language, event=info.event, hazard=info.hazard,
                      level=info.level, headline=info.headline,  # type: ignore[arg-type]
                      area_descs=[a.desc for a in info.areas if a.desc],
                      geocodes=[pb.Geocode(value_name=n, value=v)
                                for a in info.areas for n, v in a.geocodes],
                      grid_cells=cells)


def _duty_notified(app: ServiceApplication, record: pb.CapAlertImported, source: str,
                   duty: str, cause: Cause, now: datetime) -> list[ProtoAggregate]:
    """An unplaced alert notifies the duty party (again, for an update of one); one that
    is placed or cancelled withdraws what waits for it."""
    notification = app.find(Notification, notification_id_of(source, duty))
    step = Cause(actor="monitor", occurred_at=cause.occurred_at, correlation_id=source,
                 reason=f"CAP alert {record.identifier} from {record.sender} names no place "
                        "the city's grid knows: place or dismiss it"[:1000])
    if record.unplaced:
        where = "; ".join(d for i in record.infos for d in i.area_descs) or "no area given"
        view = pb.PartyNotification(
            warning_id=source, party=duty, role="duty_officer", channel="app", step=1,
            level=record.level, hazard=record.hazard, cell_name=where[:200],
            policy=UNPLACED_POLICY)
        notified = pb.WarningNotified(notification=view)
        if notification is None:
            return [Notification.start(notification_id_of(source, duty), "notified", notified,
                                       step, now)]
        notification.record("notified", notified, step, now)
        return [notification]
    if notification is not None and notification.waiting:
        notification.record("withdrawn", pb.NotificationWithdrawn(warning_id=source,
                                                                  party=duty), cause, now)
        return [notification]
    return []


def _moved(app: ServiceApplication, source: str, before: Sequence[pb.CapTarget],
           after: Sequence[pb.CapTarget], measured_at: datetime, reason: str, cause: Cause,
           now: datetime, answer: Any) -> list[Any]:
    """Move the source's colours on the cells' watches from before to after; the watches
    that recorded something (their warnings named in the answer)."""
    was = {(c, t.hazard): t.level for t in before for c in t.grid_cells}
    will = {(c, t.hazard): t.level for t in after for c in t.grid_cells}
    changed: list[Any] = []
    for cell, hazard in sorted(was.keys() | will.keys()):
        watch = app.find(HazardWatch, watch_id_of(cell, hazard))
        moved = watch_move(watch, source, cell, hazard,
                           will.get((cell, hazard), L.WARNING_LEVEL_NONE), measured_at,
                           reason, cause, now, app)
        if moved is not None:
            changed.append(moved)
            answer.warning_ids.append(moved.warning.id)
    return changed


def _unplaced(app: ServiceApplication, sender: str, identifier: str, rule: str
              ) -> CapAlertAggregate:
    alert = app.find(CapAlertAggregate, alert_id_of(sender, identifier))
    if alert is None:
        raise NotFound("CAP alert", f"{sender},{identifier}")
    if alert.status != S.CAP_ALERT_STATUS_UNPLACED:
        state = S.Name(alert.view.status).removeprefix("CAP_ALERT_STATUS_").lower()
        raise RuleViolation(rule, f"CAP alert {sender},{identifier} is {state}; only an "
                                  "unplaced alert is placed or dismissed")
    return alert


def _decided(app: ServiceApplication, alert: CapAlertAggregate, cause: Cause, now: datetime
             ) -> list[ProtoAggregate]:
    view = alert.view
    notification = app.find(Notification, notification_id_of(view.source, view.duty_party))
    if notification is None or not notification.waiting:
        return []
    notification.record("acknowledged", pb.NotificationAcknowledged(
        warning_id=view.source, party=view.duty_party, by=cause.actor), cause, now)
    return [notification]


def place(app: ServiceApplication, sender: str, identifier: str, districts: Sequence[str],
          cells: Sequence[str], resolution: int, cause: Cause, now: datetime
          ) -> tuple[pb.PlaceCapAlertResponse, list[Any]]:
    """A person puts an unplaced alert on districts and cells: each info's hazard at its
    colour on every one of them."""
    alert = _unplaced(app, sender, identifier, "cap-place-unplaced")
    if not districts and not cells:
        raise InvalidArgument("districts", "name at least one district or grid cell")
    index = grid.grid_index(app)
    by_id = {d.district: d for d in index.districts} if index is not None else {}
    chosen: dict[str, None] = {}
    for n, district in enumerate(districts):
        if district not in by_id:
            raise InvalidArgument(f"districts[{n}]", f"no district {district[:64]!r} in the "
                                                     "city's grid")
        chosen.update(dict.fromkeys(by_id[district].cells))
    for n, cell in enumerate(cells):
        chosen[grid.canonical_cell(f"grid_cells[{n}]", cell, resolution)] = None
    if not chosen:
        raise InvalidArgument("districts", "the districts named have no cells in the grid")
    if len(chosen) > MAX_CELLS:
        raise InvalidArgument("grid_cells", f"at most {MAX_CELLS} cells")
    targets = folded((i.hazard, i.level, chosen) for i in alert.view.infos)
    answer = pb.PlaceCapAlertResponse()
    changed = _moved(app, alert.view.source, [], targets, cause.occurred_at,
                     f"CAP alert {identifier} from {sender} placed by {cause.actor}", cause,
                     now, answer)
    alert.record("placed", pb.CapAlertPlaced(districts=list(districts), targets=targets),
                 cause, now)
    changed.extend([alert, *_decided(app, alert, cause, now)])
    answer.alert.CopyFrom(alert.view)
    return answer, changed


def dismiss(app: ServiceApplication, sender: str, identifier: str, reason: str, cause: Cause,
            now: datetime) -> tuple[pb.DismissCapAlertResponse, list[Any]]:
    """A person decides an unplaced alert is not the city's concern."""
    if not reason.strip():
        raise InvalidArgument("reason", "say why the alert is not the city's concern")
    alert = _unplaced(app, sender, identifier, "cap-dismiss-unplaced")
    alert.record("dismissed", pb.CapAlertDismissed(reason=reason[:1000]), cause, now)
    return pb.DismissCapAlertResponse(alert=alert.view), [alert, *_decided(app, alert, cause,
                                                                          now)]


def watch_move(watch: HazardWatch | None, source: str, cell: str, hazard: str, level: int,
               measured_at: datetime, reason: str, cause: Cause, now: datetime,
               app: ServiceApplication) -> HazardWatch | None:
    """Put the alert's colour on the cell's watch (NONE takes it away); the watch if it
    recorded something."""
    centre = grid.centre_of(cell)
    sensor = pb.Sensor(id=source, hazard=hazard, grid_cell=cell, location=centre)
    reading = pb.Reading(sensor_id=source, value=float(level),
                         measured_at=to_timestamp(measured_at))
    step = Cause(actor=cause.actor, via=cause.via, occurred_at=cause.occurred_at,
                 reason=reason[:1000], correlation_id=source[:128])

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
