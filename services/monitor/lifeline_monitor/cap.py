"""OASIS CAP 1.2, out and in: how warnings reach other agencies and public-alert channels,
and how theirs reach Lifeline.

Out: every state change of a warning (raised, updated, acknowledged, cleared) is one CAP
alert: `Alert` for the raise, `Update` for a change, `Cancel` for the clear, each after the
first naming its predecessor in `references`. `info` is mapped from the hazard and colour
(`HAZARDS`, `COLOURS`: the table in monitor's README); `area` is the warning's H3 cell, as
its boundary polygon and an `H3` geocode. Built with lxml, checked against the OASIS
schema (shipped beside this module) before it leaves.

In: an alert from another agency is checked against the schema (refused naming the element
that breaks it), mapped to a hazard and colour, and becomes a warning source on every cell
its area covers (polygon, circle or H3 geocode): one key in each cell watch's
`sensor_levels`, `cap:<sender>/<identifier>` of the first alert of its chain. Later alerts
that reference it move it to their area and colour (`Update`) or take it away (`Cancel`).
Each alert is an aggregate keyed by sender and identifier, so importing it again changes
nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from uuid import UUID

import h3
from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.edge import NAME
from lifeline.errors import InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, stable_id, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication
from lxml import etree

from lifeline_monitor import grid
from lifeline_monitor.domain import HazardWatch, level_name, watch_id_of

L = common_pb2.WarningLevel
NS = "urn:oasis:names:tc:emergency:cap:1.2"
SENDER = "monitor@lifeline.city"
SENDER_NAME = "Lifeline monitor"
#: An imported document's bound (the edge refuses bytes fields above 64 KiB too).
MAX_XML_BYTES = 64 * 1024
#: Cells one imported alert may cover (a district at resolution 8 is a few hundred).
MAX_CELLS = 2000
SOURCE_PREFIX = "cap:"


@dataclass(frozen=True)
class Hazard:
    category: tuple[str, ...]
    event: str
    response: str


#: hazard -> CAP category, event and responseType (out); in, an alert's event names its
#: hazard through the same table (or an eventCode `lifeline:hazard`).
HAZARDS: dict[str, Hazard] = {
    "urban_flooding": Hazard(("Met",), "Urban flooding", "Avoid"),
    "heavy_rain": Hazard(("Met",), "Rainstorm", "Prepare"),
    "river_flooding": Hazard(("Met",), "River flooding", "Prepare"),
    "embankment_overtopping": Hazard(("Met", "Infra"), "Embankment overtopping", "Evacuate"),
    "metro_flooding": Hazard(("Transport", "Met"), "Metro flooding", "Avoid"),
    "gas_leak": Hazard(("Safety", "Infra"), "Gas leak", "Avoid"),
    "gas_explosion_risk": Hazard(("Fire", "Safety"), "Gas explosion risk", "Evacuate"),
    "building_fire": Hazard(("Fire",), "Building fire", "Avoid"),
    "power_outage": Hazard(("Infra",), "Power outage", "Prepare"),
    "hospital_blackout": Hazard(("Health", "Infra"), "Hospital blackout", "Execute"),
    "water_pollution": Hazard(("Env",), "Water pollution", "Avoid"),
    "earthquake": Hazard(("Geo",), "Earthquake", "Assess"),
}
OTHER = Hazard(("Other",), "", "Monitor")


@dataclass(frozen=True)
class Colour:
    urgency: str
    severity: str
    certainty: str


#: colour -> CAP urgency, severity, certainty (out); in, severity gives the colour.
COLOURS: dict[int, Colour] = {
    L.WARNING_LEVEL_RED: Colour("Immediate", "Extreme", "Observed"),
    L.WARNING_LEVEL_ORANGE: Colour("Expected", "Severe", "Observed"),
    L.WARNING_LEVEL_YELLOW: Colour("Future", "Moderate", "Likely"),
    L.WARNING_LEVEL_BLUE: Colour("Future", "Minor", "Possible"),
}
CLEARED = Colour("Past", "Minor", "Observed")
SEVERITY_LEVEL = {"Extreme": L.WARNING_LEVEL_RED, "Severe": L.WARNING_LEVEL_ORANGE,
                  "Moderate": L.WARNING_LEVEL_YELLOW, "Minor": L.WARNING_LEVEL_BLUE,
                  "Unknown": L.WARNING_LEVEL_YELLOW}
MSG_TYPES = {"raised": "Alert", "updated": "Update", "acknowledged": "Update",
             "cleared": "Cancel"}


@cache
def _schema_source() -> bytes:
    return resources.files("lifeline_monitor").joinpath("CAP-v1.2.xsd").read_bytes()


_validators = threading.local()


def schema() -> etree.XMLSchema:
    """The OASIS CAP 1.2 schema (shipped with monitor), one validator per thread: lxml
    keeps a validator's error log on the instance and clears it at each validation, so a
    validator shared with a worker thread that checks an outgoing alert could lose the
    error of an incoming one between `validate` and reading it."""
    validator: etree.XMLSchema | None = getattr(_validators, "schema", None)
    if validator is None:
        source = etree.fromstring(_schema_source(), _parser())
        validator = _validators.schema = etree.XMLSchema(source)
    return validator


def _parser() -> etree.XMLParser:
    # No DTDs, no entities, no network: an alert is data, never instructions to the parser.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True)


def cap_time(when: datetime) -> str:
    """CAP's dateTime: seconds and an explicit offset, never 'Z'."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def identifier_of(warning_id: str, sequence: int) -> str:
    return f"lifeline.monitor:{warning_id}:{sequence}"


# ---- out ----

class CapFeed(ProtoAggregate):
    """A warning's CAP alerts as published, one per state change."""

    EVENT_TYPE = pb.CapFeedEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.last: pb.CapAlert = event.alert
        self.warning: pb.Warning = event.warning


def feed_id_of(warning_id: str) -> UUID:
    return stable_id("cap-feed", warning_id)


def changed(warning: pb.Warning | None, field: str, event: Any
            ) -> tuple[pb.Warning, str, str] | None:
    """The warning after one of its events, the alert's msgType and note (None: an event
    of a warning whose raise is not known)."""
    if field == "raised":
        return pb.Warning(id=event.warning_id, hazard=event.hazard, grid_cell=event.grid_cell,
                          location=event.location, level=event.level,
                          evidence=event.evidence, responsible=event.responsible,
                          coupled_rule=event.coupled_rule, sources=event.sources), "Alert", ""
    if warning is None or field not in MSG_TYPES:
        return None
    after = pb.Warning()
    after.CopyFrom(warning)
    note = ""
    if field == "updated":
        after.level = event.level
        if event.HasField("evidence"):
            after.evidence.CopyFrom(event.evidence)
    elif field == "acknowledged":
        note = f"acknowledged by {event.meta.actor}"
    elif field == "cleared":
        note = "the warning was cleared"
    return after, MSG_TYPES[field], note


def published(app: ServiceApplication, field: str, event: Any, cause: Cause, now: datetime
              ) -> list[Any]:
    """A warning event came by: publish its CAP alert, built from the one before."""
    feed = app.find(CapFeed, feed_id_of(event.warning_id))
    moved = changed(feed.warning if feed is not None else None, field, event)
    if moved is None:
        return []
    warning, msg_type, note = moved
    made = alert(warning, msg_type, event.meta.sequence, from_timestamp(event.meta.occurred_at),
                 feed.last if feed is not None else None, note)
    message = pb.CapAlertPublished(warning_id=event.warning_id, alert=made, warning=warning)
    if feed is None:
        return [CapFeed.start(feed_id_of(event.warning_id), "published", message, cause, now)]
    feed.record("published", message, cause, now)
    return [feed]


def alerts_for(app: ServiceApplication, warning_id: str) -> list[pb.CapAlert]:
    """Every state change of the warning as a CAP alert, oldest first (from the watch's
    events: what the feed published, and also what it has yet to)."""
    parts = warning_id.split("/")
    if len(parts) != 3:
        raise InvalidArgument("warning_id", "a warning id looks like <grid cell>/<hazard>/<n>")
    alerts: list[pb.CapAlert] = []
    warning: pb.Warning | None = None
    for stored in app.events.get(watch_id_of(parts[0], parts[1])):
        wrapper = HazardWatch.decode(stored.payload)  # type: ignore[attr-defined]
        field, event = event_of(wrapper)
        if event.warning_id != warning_id:
            continue
        moved = changed(warning, field, event)
        if moved is None:
            continue
        warning, msg_type, note = moved
        alerts.append(alert(warning, msg_type, event.meta.sequence,
                            from_timestamp(event.meta.occurred_at),
                            alerts[-1] if alerts else None, note))
    if not alerts:
        raise NotFound("warning", warning_id)
    return alerts


def alert(warning: pb.Warning, msg_type: str, sequence: int, sent: datetime,
          previous: pb.CapAlert | None, note: str = "") -> pb.CapAlert:
    """One CAP alert for the warning as it stands after one of its events."""
    identifier = identifier_of(warning.id, sequence)
    hazard = HAZARDS.get(warning.hazard, OTHER)
    colour = CLEARED if msg_type == "Cancel" else COLOURS.get(warning.level, CLEARED)
    root = etree.Element(f"{{{NS}}}alert", nsmap={None: NS})  # type: ignore[dict-item]

    def add(parent: Any, name: str, text: str | None = None) -> Any:
        element = etree.SubElement(parent, f"{{{NS}}}{name}")
        if text is not None:
            element.text = text
        return element

    add(root, "identifier", identifier)
    add(root, "sender", SENDER)
    add(root, "sent", cap_time(sent))
    add(root, "status", "Actual")
    add(root, "msgType", msg_type)
    add(root, "scope", "Public")
    if note:
        add(root, "note", note)
    references = ""
    if previous is not None:
        references = f"{SENDER},{previous.identifier},{cap_time(from_timestamp(previous.sent))}"
        add(root, "references", references)
    add(root, "incidents", warning.id)
    info = add(root, "info")
    add(info, "language", "en-US")
    for category in hazard.category:
        add(info, "category", category)
    event_name = hazard.event or warning.hazard.replace("_", " ").capitalize()
    add(info, "event", event_name)
    add(info, "responseType", "AllClear" if msg_type == "Cancel" else hazard.response)
    add(info, "urgency", colour.urgency)
    add(info, "severity", colour.severity)
    add(info, "certainty", colour.certainty)
    code = add(info, "eventCode")
    add(code, "valueName", "lifeline:hazard")
    add(code, "value", warning.hazard)
    add(info, "effective", cap_time(sent))
    add(info, "senderName", SENDER_NAME)
    where = warning.responsible.cell_name or f"H3 cell {warning.grid_cell}"
    colour_name = level_name(warning.level)
    add(info, "headline", f"{colour_name} {event_name.lower()} warning: {where}"
        if msg_type != "Cancel" else f"{event_name} warning cleared: {where}")
    description = [f"Lifeline warning {warning.id}."]
    if warning.coupled_rule:
        description.append(f"Compound risk ({warning.coupled_rule}) from "
                           f"{', '.join(warning.sources)}.")
    if warning.evidence.sensor_id:
        description.append(f"Evidence: sensor {warning.evidence.sensor_id} read "
                           f"{warning.evidence.value:g}.")
    add(info, "description", " ".join(description))
    for name, value in (("lifeline:level", colour_name), ("lifeline:warning", warning.id),
                        ("lifeline:district", warning.responsible.district)):
        if value:
            parameter = add(info, "parameter")
            add(parameter, "valueName", name)
            add(parameter, "value", value)
    area = add(info, "area")
    add(area, "areaDesc", where)
    if grid.is_cell(warning.grid_cell):
        add(area, "polygon", polygon_of(warning.grid_cell))
    geocode = add(area, "geocode")
    add(geocode, "valueName", "H3")
    add(geocode, "value", warning.grid_cell)
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    check(root)
    return pb.CapAlert(identifier=identifier, msg_type=msg_type, sent=to_timestamp(sent),
                       xml=xml, references=references)


def polygon_of(cell: str) -> str:
    """The cell's boundary as CAP writes a polygon: lat,lon pairs, the first repeated last."""
    points = [*h3.cell_to_boundary(cell)]
    points.append(points[0])
    return " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in points)


def check(root: Any) -> None:
    """Refuse a document the OASIS schema refuses, naming the element."""
    validator = schema()
    if validator.validate(root):
        return
    error = validator.error_log.last_error  # type: ignore[attr-defined]
    message = str(error.message).replace(f"{{{NS}}}", "")
    path = "/".join(step.split(":")[-1] for step in (error.path or "").split("/") if step)
    raise InvalidArgument("xml", f"not a valid CAP 1.2 alert: {path or 'alert'} (line "
                                 f"{error.line}): {message[:300]}")


# ---- in ----

@dataclass(frozen=True)
class Incoming:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    references: tuple[tuple[str, str], ...]
    hazard: str
    level: int
    headline: str
    cells: tuple[str, ...]
    expires: datetime | None


def parse(xml: bytes, resolution: int) -> Incoming:
    """Read and check an alert (INVALID_ARGUMENT naming what is wrong)."""
    if not xml.strip():
        raise InvalidArgument("xml", "is required: a CAP 1.2 alert document")
    if len(xml) > MAX_XML_BYTES:
        raise InvalidArgument("xml", f"at most {MAX_XML_BYTES // 1024} KiB ({len(xml)} bytes)")
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as error:
        raise InvalidArgument("xml", f"not well-formed XML: {str(error)[:200]}") from None
    if root.tag != f"{{{NS}}}alert":
        raise InvalidArgument("xml", f"the root element must be <alert> in {NS}, not "
                                     f"{str(root.tag)[:80]}")
    check(root)

    def text(parent: Any, name: str) -> str:
        found = parent.find(f"{{{NS}}}{name}")
        return (found.text or "").strip() if found is not None else ""

    status, msg_type = text(root, "status"), text(root, "msgType")
    if status not in ("Actual", "Exercise"):
        raise RuleViolation("cap-actual-alerts", f"a {status} alert raises no warning "
                                                 "(only Actual and Exercise do)")
    if msg_type not in ("Alert", "Update", "Cancel"):
        raise RuleViolation("cap-alert-update-cancel", f"msgType {msg_type} is not taken "
                                                       "(Alert, Update and Cancel are)")
    references = tuple((r.split(",")[0], r.split(",")[1]) for r in text(
        root, "references").split() if r.count(",") == 2)
    infos = root.findall(f"{{{NS}}}info")
    if not infos and msg_type != "Cancel":
        raise InvalidArgument("xml", "info: an Alert or Update needs at least one <info>")
    hazard, level, headline, cells, expires = "", L.WARNING_LEVEL_NONE, "", [], None
    if infos:
        info = infos[0]
        hazard = hazard_of(info)
        level = SEVERITY_LEVEL[text(info, "severity")]
        headline = text(info, "headline")[:200]
        if text(info, "expires"):
            expires = datetime.fromisoformat(text(info, "expires"))
        cells = covered(info, resolution)
        if not cells and msg_type != "Cancel":
            raise InvalidArgument("xml", "area: covers no cell (give a polygon, circle or "
                                         "H3 geocode)")
    return Incoming(identifier=text(root, "identifier"), sender=text(root, "sender"),
                    sent=datetime.fromisoformat(text(root, "sent")), status=status,
                    msg_type=msg_type, references=references, hazard=hazard, level=level,
                    headline=headline, cells=tuple(cells), expires=expires)


def hazard_of(info: Any) -> str:
    """The eventCode `lifeline:hazard` if given, else the event's name in `HAZARDS`
    (case and spaces aside), else the event itself written as a name."""
    for code in info.findall(f"{{{NS}}}eventCode"):
        if (code.findtext(f"{{{NS}}}valueName") or "").strip() == "lifeline:hazard":
            value = (code.findtext(f"{{{NS}}}value") or "").strip()
            if value:
                return _name("eventCode", value)
    event = (info.findtext(f"{{{NS}}}event") or "").strip()
    for hazard, mapped in HAZARDS.items():
        if mapped.event.lower() == event.lower():
            return hazard
    return _name("event", event.lower().replace(" ", "_").replace("-", "_"))


def _name(element: str, value: str) -> str:
    if not NAME.match(value) or len(value) > 64:
        raise InvalidArgument("xml", f"info/{element}: {value[:40]!r} is not a hazard name")
    return value


def covered(info: Any, resolution: int) -> list[str]:
    """The cells at the grid's resolution an info's areas cover (overlap)."""
    found: dict[str, None] = {}
    for number, area in enumerate(info.findall(f"{{{NS}}}area")):
        where = f"info/area[{number + 1}]"
        for polygon in area.findall(f"{{{NS}}}polygon"):
            found.update(dict.fromkeys(_polygon_cells(polygon.text or "", resolution, where)))
        for circle in area.findall(f"{{{NS}}}circle"):
            found.update(dict.fromkeys(_circle_cells(circle.text or "", resolution, where)))
        for geocode in area.findall(f"{{{NS}}}geocode"):
            if (geocode.findtext(f"{{{NS}}}valueName") or "").strip().upper() == "H3":
                value = (geocode.findtext(f"{{{NS}}}value") or "").strip().lower()
                found.update(dict.fromkeys(_h3_cells(value, resolution, where)))
        if len(found) > MAX_CELLS:
            raise InvalidArgument("xml", f"{where}: covers more than {MAX_CELLS} cells")
    return list(found)


def _points(text: str, where: str) -> list[tuple[float, float]]:
    points = []
    for pair in text.split():
        try:
            lat, lon = (float(v) for v in pair.split(","))
        except ValueError:
            raise InvalidArgument("xml", f"{where}: {pair[:30]!r} is not lat,lon") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidArgument("xml", f"{where}: {pair[:30]!r} is off the globe")
        points.append((lat, lon))
    return points


def _area_km2(points: Sequence[tuple[float, float]]) -> float:
    """A polygon's area, near enough to bound the work (shoelace on an equirectangular
    projection at its mean latitude)."""
    mean = math.radians(sum(lat for lat, _ in points) / len(points))
    xy = [(lon * 111.32 * math.cos(mean), lat * 110.57) for lat, lon in points]
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2)
                   in zip(xy, xy[1:] + xy[:1], strict=True))) / 2


def _shape_cells(points: Sequence[tuple[float, float]], resolution: int, where: str
                 ) -> list[str]:
    # Refused before H3 is asked: a continent-sized polygon would take seconds to fill.
    if _area_km2(points) / h3.average_hexagon_area(resolution, "km^2") > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}: covers more than {MAX_CELLS} cells")
    try:
        shape = h3.LatLngPoly(list(points))
        cells = h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap")
    except (ValueError, h3.H3BaseException) as error:
        raise InvalidArgument("xml", f"{where}: not a usable area ({error})") from None
    if len(cells) > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}: covers more than {MAX_CELLS} cells")
    return sorted(str(c) for c in cells)


def _polygon_cells(text: str, resolution: int, where: str) -> list[str]:
    points = _points(text, f"{where}/polygon")
    if len(points) < 4 or points[0] != points[-1]:
        raise InvalidArgument("xml", f"{where}/polygon: at least four points, the first "
                                     "repeated last")
    return _shape_cells(points[:-1], resolution, f"{where}/polygon")


def _circle_cells(text: str, resolution: int, where: str) -> list[str]:
    here = f"{where}/circle"
    try:
        centre, radius_text = text.split()
        radius = float(radius_text)
    except ValueError:
        raise InvalidArgument("xml", f"{here}: 'lat,lon radius-km'") from None
    (lat, lon), = _points(centre, here)
    if not 0 <= radius <= 200:
        raise InvalidArgument("xml", f"{here}: radius must be 0 to 200 km")
    if radius == 0:
        return [str(h3.latlng_to_cell(lat, lon, resolution))]
    # A 36-sided polygon around the circle (its sides within 0.4% of the radius).
    dlat = radius / 111.32
    dlon = radius / (111.32 * max(math.cos(math.radians(lat)), 1e-6))
    ring = [(lat + dlat * math.sin(a), lon + dlon * math.cos(a))
            for a in (2 * math.pi * i / 36 for i in range(36))]
    return _shape_cells(ring, resolution, here)


def _h3_cells(value: str, resolution: int, where: str) -> list[str]:
    if not grid.is_cell(value):
        raise InvalidArgument("xml", f"{where}/geocode: {value[:20]!r} is not an H3 cell")
    found = h3.get_resolution(value)
    if found > resolution:
        return [str(h3.cell_to_parent(value, resolution))]
    if 7 ** (resolution - found) > MAX_CELLS:
        raise InvalidArgument("xml", f"{where}/geocode: covers more than {MAX_CELLS} cells")
    return sorted(str(c) for c in h3.cell_to_children(value, resolution))


def alert_id_of(sender: str, identifier: str) -> UUID:
    return stable_id("cap-alert", sender, identifier)


class CapAlertAggregate(ProtoAggregate):
    """One alert taken in from another agency."""

    EVENT_TYPE = pb.CapAlertEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.imported: pb.CapAlertImported = event


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
