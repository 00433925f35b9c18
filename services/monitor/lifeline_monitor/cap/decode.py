"""An alert from another agency read and checked: well-formed, schema-valid, an `Actual` or
`Exercise` `Alert`, `Update` or `Cancel`; mapped to a hazard and colour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lifeline.common.v1 import common_pb2
from lifeline.edge import NAME
from lifeline.errors import InvalidArgument, RuleViolation

from lifeline_monitor.cap.geometry import MAX_CELLS, Ring, area_cells
from lifeline_monitor.cap.mapping import HAZARDS, SEVERITY_LEVEL
from lifeline_monitor.cap.schema import NS, check, read

L = common_pb2.WarningLevel


@dataclass(frozen=True)
class Area:
    desc: str
    #: Every geocode given, (valueName, value), H3 included.
    geocodes: tuple[tuple[str, str], ...]
    #: The H3 cells its polygons, circles and H3 geocodes cover.
    cells: tuple[str, ...]
    #: Its shapes too wide to fill with cells, as rings.
    wide: tuple[Ring, ...] = ()


@dataclass(frozen=True)
class Info:
    language: str
    event: str
    hazard: str
    level: int
    headline: str
    areas: tuple[Area, ...]


@dataclass(frozen=True)
class Incoming:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    references: tuple[tuple[str, str], ...]
    infos: tuple[Info, ...]
    expires: datetime | None

    @property
    def hazard(self) -> str:
        return self.infos[0].hazard if self.infos else ""

    @property
    def level(self) -> int:
        return max((i.level for i in self.infos), default=L.WARNING_LEVEL_NONE)

    @property
    def headline(self) -> str:
        return self.infos[0].headline if self.infos else ""

    @property
    def cells(self) -> tuple[str, ...]:
        """Every cell its areas' shapes cover, in order, once."""
        return tuple(dict.fromkeys(c for i in self.infos for a in i.areas for c in a.cells))


def _text(parent: Any, name: str) -> str:
    found = parent.find(f"{{{NS}}}{name}")
    return (found.text or "").strip() if found is not None else ""


def parse(xml: bytes, resolution: int) -> Incoming:
    """Read and check an alert (INVALID_ARGUMENT naming what is wrong). An area that names
    no cell is kept with its description and geocodes: placing it is the intake's job."""
    root = read(xml)
    if root.tag != f"{{{NS}}}alert":
        raise InvalidArgument("xml", f"the root element must be <alert> in {NS}, not "
                                     f"{str(root.tag)[:80]}")
    check(root)
    status, msg_type = _text(root, "status"), _text(root, "msgType")
    if status not in ("Actual", "Exercise"):
        raise RuleViolation("cap-actual-alerts", f"a {status} alert raises no warning "
                                                 "(only Actual and Exercise do)")
    if msg_type not in ("Alert", "Update", "Cancel"):
        raise RuleViolation("cap-alert-update-cancel", f"msgType {msg_type} is not taken "
                                                       "(Alert, Update and Cancel are)")
    references = tuple((r.split(",")[0], r.split(",")[1]) for r in _text(
        root, "references").split() if r.count(",") == 2)
    elements = root.findall(f"{{{NS}}}info")
    if not elements and msg_type != "Cancel":
        raise InvalidArgument("xml", "info: an Alert or Update needs at least one <info>")
    named = [hazard_of(e) for e in elements]
    # An info in another language whose event is no name is the same hazard as the first
    # info that names one.
    fallback = next((h for h in named if h), None)
    infos: list[Info] = []
    expires: datetime | None = None
    total = 0
    for number, element in enumerate(elements, start=1):
        hazard = named[number - 1] or fallback
        if hazard is None:
            event = _text(element, "event")
            raise InvalidArgument("xml", f"info[{number}]/event: {event[:40]!r} is not a "
                                         "hazard name (give an eventCode lifeline:hazard)")
        areas = []
        for index, area in enumerate(element.findall(f"{{{NS}}}area"), start=1):
            where = f"info[{number}]/area[{index}]"
            covered = area_cells(area, resolution, where, MAX_CELLS - total)
            total += len(covered.cells)
            codes = tuple((_text(g, "valueName")[:64], _text(g, "value")[:64])
                          for g in area.findall(f"{{{NS}}}geocode"))
            areas.append(Area(_text(area, "areaDesc")[:300], codes, covered.cells,
                              covered.wide))
        if _text(element, "expires") and expires is None:
            expires = datetime.fromisoformat(_text(element, "expires"))
        infos.append(Info(language=_text(element, "language")[:35] or "en-US",
                          event=_text(element, "event")[:200], hazard=hazard,
                          level=SEVERITY_LEVEL[_text(element, "severity")],
                          headline=_text(element, "headline")[:200], areas=tuple(areas)))
    return Incoming(identifier=_text(root, "identifier"), sender=_text(root, "sender"),
                    sent=datetime.fromisoformat(_text(root, "sent")), status=status,
                    msg_type=msg_type, references=references, infos=tuple(infos),
                    expires=expires)


def hazard_of(info: Any) -> str:
    """The eventCode `lifeline:hazard` if given, else the event's name in `HAZARDS`
    (case and spaces aside), else the event itself written as a name; "" when the event
    is no name (another language's script)."""
    for code in info.findall(f"{{{NS}}}eventCode"):
        if (code.findtext(f"{{{NS}}}valueName") or "").strip() == "lifeline:hazard":
            value = (code.findtext(f"{{{NS}}}value") or "").strip()
            if value:
                return _name("eventCode", value)
    event = (info.findtext(f"{{{NS}}}event") or "").strip()
    for hazard, mapped in HAZARDS.items():
        if mapped.event.lower() == event.lower():
            return hazard
    written = event.lower().replace(" ", "_").replace("-", "_")
    return written if NAME.match(written) and len(written) <= 64 else ""


def _name(element: str, value: str) -> str:
    if not NAME.match(value) or len(value) > 64:
        raise InvalidArgument("xml", f"info/{element}: {value[:40]!r} is not a hazard name")
    return value
