"""A warning as one CAP 1.2 alert: `info` from the hazard and colour (`mapping`), `area` the
warning's H3 cell as its boundary polygon, its district's administrative geocodes and an `H3`
geocode; checked against the OASIS
schema before it leaves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import h3
from lifeline.events import from_timestamp, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lxml import etree

from lifeline_monitor import grid
from lifeline_monitor.cap.mapping import CLEARED, COLOURS, HAZARDS, OTHER
from lifeline_monitor.cap.schema import NS, cap_time, check
from lifeline_monitor.domain import level_name

SENDER = "monitor@lifeline.city"
SENDER_NAME = "Lifeline monitor"


def identifier_of(warning_id: str, sequence: int) -> str:
    return f"lifeline.monitor:{warning_id}:{sequence}"


def alert(warning: pb.Warning, msg_type: str, sequence: int, sent: datetime,
          previous: pb.CapAlert | None, note: str = "",
          geocodes: Sequence[pb.Geocode] = ()) -> pb.CapAlert:
    """One CAP alert for the warning as it stands after one of its events; geocodes: the
    administrative codes of the cell's district, written on its area before the H3 cell."""
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
    for name, value in [*((g.value_name, g.value) for g in geocodes),
                        ("H3", warning.grid_cell)]:
        geocode = add(area, "geocode")
        add(geocode, "valueName", name)
        add(geocode, "value", value)
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    check(root)
    return pb.CapAlert(identifier=identifier, msg_type=msg_type, sent=to_timestamp(sent),
                       xml=xml, references=references)


def polygon_of(cell: str) -> str:
    """The cell's boundary as CAP writes a polygon: lat,lon pairs, the first repeated last."""
    points = [*h3.cell_to_boundary(cell)]
    points.append(points[0])
    return " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in points)
