"""An alert from another agency read and checked: well-formed, schema-valid, an `Actual` or
`Exercise` `Alert`, `Update` or `Cancel`; mapped to a hazard and colour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lifeline.common.v1 import common_pb2
from lifeline.edge import NAME
from lifeline.errors import InvalidArgument, RuleViolation
from lxml import etree

from lifeline_monitor.cap.geometry import covered
from lifeline_monitor.cap.mapping import HAZARDS, SEVERITY_LEVEL
from lifeline_monitor.cap.schema import NS, _parser, check

L = common_pb2.WarningLevel
#: An imported document's bound (the edge refuses bytes fields above 64 KiB too).
MAX_XML_BYTES = 64 * 1024


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
