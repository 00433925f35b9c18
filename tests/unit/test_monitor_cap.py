"""CAP 1.2 out and in: every alert Lifeline writes validates against the OASIS schema (raise,
update, escalation, acknowledgement, clear), an update references its predecessor; alerts
written in the style of the specification's appendix import onto the cells their areas
cover, later alerts update and cancel them, a repeat changes nothing, and an invalid one is
refused naming the element."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor import grid
from lifeline_monitor.cap import decode, encode, feed, intake
from lifeline_monitor.cap.schema import NS, cap_time
from lifeline_monitor.domain import HazardWatch, watch_id_of
from lxml import etree

from tests.unit.test_monitor_escalation import RESPONSIBLE, Store

L = common_pb2.WarningLevel
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "cap"
OASIS = Path("/work/shared/standards/CAP-v1.2.xsd")
XUJIAHUI_CELL = "88309b96dbfffff"
START = datetime(2031, 7, 20, 8, 0, tzinfo=UTC)


def oasis() -> etree.XMLSchema:
    """The OASIS schema as published (the copy monitor ships must be the same)."""
    shipped = ROOT / "services" / "monitor" / "lifeline_monitor" / "CAP-v1.2.xsd"
    if OASIS.exists():
        assert OASIS.read_bytes() == shipped.read_bytes()
    return etree.XMLSchema(etree.parse(str(OASIS if OASIS.exists() else shipped)))


def test_every_alert_of_a_warning_life_validates_and_references_its_predecessor() -> None:
    schema = oasis()
    warning = pb.Warning(id=f"{XUJIAHUI_CELL}/urban_flooding/1", hazard="urban_flooding",
                         grid_cell=XUJIAHUI_CELL, level=L.WARNING_LEVEL_YELLOW,
                         responsible=RESPONSIBLE,
                         evidence=pb.Reading(sensor_id="wl-xjh", value=24))
    steps = [("Alert", L.WARNING_LEVEL_YELLOW, ""),  # raised
             ("Update", L.WARNING_LEVEL_YELLOW, ""),  # another sensor joins
             ("Update", L.WARNING_LEVEL_RED, ""),  # escalated
             ("Update", L.WARNING_LEVEL_RED, "acknowledged by wang-fang"),
             ("Cancel", L.WARNING_LEVEL_NONE, "the warning was cleared")]
    alerts: list[pb.CapAlert] = []
    for sequence, (msg_type, level, note) in enumerate(steps, start=1):
        warning.level = level
        alerts.append(encode.alert(warning, msg_type, sequence,
                                START + timedelta(minutes=10 * sequence),
                                alerts[-1] if alerts else None, note))
    for number, produced in enumerate(alerts):
        document = etree.fromstring(produced.xml)
        assert schema.validate(document), schema.error_log.last_error
        ns = {"cap": NS}
        assert document.findtext("cap:msgType", namespaces=ns) == steps[number][0]
        if number:
            before = alerts[number - 1]
            assert document.findtext("cap:references", namespaces=ns) == (
                f"{encode.SENDER},{before.identifier},"
                f"{cap_time(from_timestamp(before.sent))}")
        else:
            assert document.find("cap:references", namespaces=ns) is None
    red = etree.fromstring(alerts[2].xml)
    info = {e.tag.split("}")[1]: e.text for e in red.find(f"{{{NS}}}info")}
    assert (info["category"], info["urgency"], info["severity"], info["certainty"]) == (
        "Met", "Immediate", "Extreme", "Observed")
    area = red.find(f"{{{NS}}}info/{{{NS}}}area")
    polygon = area.findtext(f"{{{NS}}}polygon").split()
    assert len(polygon) == 7 and polygon[0] == polygon[-1]  # a hexagon, closed
    assert area.findtext(f"{{{NS}}}geocode/{{{NS}}}value") == XUJIAHUI_CELL


def test_the_appendix_style_alerts_parse_onto_the_cells_they_cover() -> None:
    alert = decode.parse((DATA / "rainstorm_alert.xml").read_bytes(), 8)
    assert (alert.hazard, alert.level, alert.msg_type) == (
        "heavy_rain", L.WARNING_LEVEL_ORANGE, "Alert")
    assert XUJIAHUI_CELL in alert.cells and len(alert.cells) < 20
    quake = decode.parse((DATA / "earthquake_circle.xml").read_bytes(), 8)
    assert quake.hazard == "earthquake" and XUJIAHUI_CELL in quake.cells
    gas = decode.parse((DATA / "gas_leak_geocode.xml").read_bytes(), 8)
    assert (gas.hazard, gas.cells, gas.level) == ("gas_leak", (XUJIAHUI_CELL,),
                                                   L.WARNING_LEVEL_ORANGE)
    update = decode.parse((DATA / "rainstorm_update.xml").read_bytes(), 8)
    assert update.references == (("warnings@weather.sh.example", "SH-MET-2031-0720-001"),)


@pytest.mark.parametrize(("document", "names"), [
    ((DATA / "invalid_urgency.xml").read_bytes(), "urgency"),
    (b"<alert", "not well-formed"),
    (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', "root element"),
    (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><sender>x</sender></alert>',
     "identifier"),
    (b"<!DOCTYPE a [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><a>&e;</a>", "DOCTYPE"),
    (b" " * (65 * 1024), "is required"),
    (b"<a>" + b"x" * (65 * 1024) + b"</a>", "64 KiB"),
    ((DATA / "earthquake_circle.xml").read_bytes().replace(b" 1.0<", b" 2500<"),
     "circle: radius must be 0 to 2000 km"),
])
def test_an_invalid_alert_is_refused_naming_the_element(document: bytes, names: str) -> None:
    with pytest.raises(InvalidArgument, match=names):
        decode.parse(document, 8)


def test_an_invalid_alert_is_refused_naming_the_element_while_other_threads_check_alerts(
        ) -> None:
    """Monitor checks outgoing alerts in worker threads while an import is checked on the
    event loop; one thread's validation must not wipe the error another is about to name
    (a shared lxml validator did: the import failed INTERNAL, AttributeError)."""
    good = (DATA / "rainstorm_alert.xml").read_bytes()
    bad = (DATA / "invalid_urgency.xml").read_bytes()
    done = threading.Event()

    def check_others() -> None:
        while not done.is_set():
            decode.parse(good, 8)

    others = [threading.Thread(target=check_others) for _ in range(2)]
    for thread in others:
        thread.start()
    try:
        for _ in range(500):
            with pytest.raises(InvalidArgument, match="urgency"):
                decode.parse(bad, 8)
    finally:
        done.set()
        for thread in others:
            thread.join()


def cause(at: datetime) -> Cause:
    return Cause(actor="cap-gateway", via="warnings@weather.sh.example", occurred_at=at)


def xuhui(store: Store) -> Store:
    """The store with the demo city's grid loaded (an alert is placed on the grid's cells)."""
    request = grid.read_grid_file(ROOT / "grids" / "xuhui.toml")
    grid.load_grid(store, request.districts, request.cells, 8,  # type: ignore[arg-type]
                   cause(START), START, request.city)
    return store


def test_an_alert_raises_a_warning_its_update_moves_it_and_its_cancel_clears_it() -> None:
    store = xuhui(Store())

    def take(name: str) -> pb.ImportCapAlertResponse:
        incoming = decode.parse((DATA / name).read_bytes(), 8)
        answer, changed = intake.import_alert(store, incoming, 8,  # type: ignore[arg-type]
                                           cause(incoming.sent), START)
        store.record(*changed)
        return answer

    def warning() -> pb.Warning:
        watch = store.find(HazardWatch, watch_id_of(XUJIAHUI_CELL, "heavy_rain"))
        return watch.warning  # type: ignore[no-any-return]

    raised = take("rainstorm_alert.xml")
    assert f"{XUJIAHUI_CELL}/heavy_rain/1" in raised.warning_ids
    assert XUJIAHUI_CELL in raised.grid_cells
    source = "cap:warnings@weather.sh.example/SH-MET-2031-0720-001"
    assert (warning().level, dict(warning().sensor_levels)) == (
        L.WARNING_LEVEL_ORANGE, {source: L.WARNING_LEVEL_ORANGE})
    again = take("rainstorm_alert.xml")
    assert again.duplicate and not again.warning_ids
    take("rainstorm_update.xml")
    assert warning().level == L.WARNING_LEVEL_RED
    take("rainstorm_cancel.xml")
    assert warning().status == pb.WARNING_STATUS_CLEARED


def test_a_cancel_of_an_unknown_alert_is_refused() -> None:
    incoming = decode.parse((DATA / "rainstorm_cancel.xml").read_bytes(), 8)
    with pytest.raises(RuleViolation, match="cap-cancel-known-alert"):
        intake.import_alert(Store(), incoming, 8, cause(incoming.sent), START)  # type: ignore[arg-type]


def test_the_feed_publishes_one_alert_per_change_each_referencing_the_one_before() -> None:
    schema = oasis()
    store = Store()
    sensor = pb.Sensor(id="wl-xjh", hazard="urban_flooding", grid_cell=XUJIAHUI_CELL,
                       location=common_pb2.GeoPoint(lat=31.1955, lon=121.4373))
    at = [START + timedelta(minutes=m) for m in range(5)]

    def follow(watch: HazardWatch) -> None:
        for event in watch.collect_events():
            wrapper = event.payload
            field = wrapper.WhichOneof("event")
            store.record(*feed.published(store, field, getattr(wrapper, field),  # type: ignore[arg-type]
                                        cause(START), START))

    reading = pb.Reading(sensor_id="wl-xjh", value=35)
    watch = HazardWatch.open(sensor, L.WARNING_LEVEL_ORANGE, reading, cause(at[0]), START,
                             lambda: RESPONSIBLE)
    follow(watch)
    watch.sensor_moved(sensor, L.WARNING_LEVEL_RED, reading, cause(at[1]), START)
    follow(watch)
    watch.acknowledge(watch.warning.id, cause(at[2]), START)
    follow(watch)
    watch.sensor_moved(sensor, L.WARNING_LEVEL_NONE, reading, cause(at[3]), START)
    follow(watch)
    alerts = [e.published.alert for _, e in store.events]
    assert [a.msg_type for a in alerts] == ["Alert", "Update", "Update", "Cancel"]
    for before, after in itertools.pairwise(alerts):
        assert before.identifier in after.references
    assert all(schema.validate(etree.fromstring(a.xml)) for a in alerts)
    assert b"Extreme" in alerts[1].xml and b"acknowledged by cap-gateway" in alerts[2].xml
