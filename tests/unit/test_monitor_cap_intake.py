"""Every CAP alert taken in: a document with a DOCTYPE is refused before it is parsed (no
entity resolved, no file read); the four example alerts of the OASIS CAP 1.2 specification
are read with every info; an alert addressed to Xuhui's GB/T 2260 code reaches the
district's cells; one that names no place the grid knows is kept unplaced, notified to the
city's duty party, and placed or dismissed by a person; updates and cancels change and end
the alert they reference; CAP out carries the district's code on its area."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor import grid
from lifeline_monitor.cap import decode, encode, feed, geocodes, intake
from lifeline_monitor.cap.model import CapAlertAggregate, alert_id_of
from lifeline_monitor.cap.schema import NS
from lifeline_monitor.domain import HazardWatch, watch_id_of
from lifeline_monitor.escalation.model import Notification, notification_id_of
from lxml import etree

from tests.unit.test_monitor_cap import oasis
from tests.unit.test_monitor_escalation import Store

L = common_pb2.WarningLevel
S = pb.CapAlertStatus
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "cap"
START = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
GRID = grid.read_grid_file(ROOT / "grids" / "xuhui.toml")
XUHUI_CELLS = sorted(grid.cell_of(c.location) for c in GRID.cells)
ALERT = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>'
HOSTILE = {
    "internal entity": b'<!DOCTYPE alert [<!ENTITY x "plain">]>' + ALERT,
    "external entity (XXE)": b'<!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
                             + ALERT,
    "billion laughs": b'<!DOCTYPE alert [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
                      b'<!ENTITY x "&b;&b;&b;&b;&b;&b;&b;&b;">]>' + ALERT,
    "external DTD": b'<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">' + ALERT,
    "lower-case doctype after a comment": b"<!-- hi --><!doctype alert>" + ALERT,
    "UTF-16": ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE alert [<!ENTITY x "y">]>'
               + ALERT.decode()).encode("utf-16"),
}


def cause(actor: str = "cap-gateway") -> Cause:
    return Cause(actor=actor, via="warnings@weather.sh.example", occurred_at=START)


def city() -> Store:
    store = Store()
    grid.load_grid(store, GRID.districts, GRID.cells, 8, cause("city-gis"),  # type: ignore[arg-type]
                   START, GRID.city)
    return store


def take(store: Store, name: str) -> pb.ImportCapAlertResponse:
    incoming = decode.parse((DATA / name).read_bytes(), 8)
    answer, changed = intake.import_alert(store, incoming, 8, cause(), START)  # type: ignore[arg-type]
    store.record(*changed)
    return answer


def alert_of(store: Store, sender: str, identifier: str) -> pb.ImportedCapAlert:
    return store.find(CapAlertAggregate, alert_id_of(sender, identifier)).view  # type: ignore[no-any-return]


def level_on(store: Store, cell: str, hazard: str) -> int:
    watch = store.find(HazardWatch, watch_id_of(cell, hazard))
    return watch.warning.level if watch is not None and watch.active is not None else 0  # type: ignore[no-any-return]


@pytest.mark.parametrize("document", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_document_with_a_doctype_is_refused_naming_the_rule(document: bytes) -> None:
    with pytest.raises(InvalidArgument, match="DOCTYPE is refused"):
        decode.parse(document, 8)


def test_a_document_nested_past_the_bound_is_refused() -> None:
    deep = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">' + b"<a>" * 40 + \
        b"</a>" * 40 + b"</alert>"
    with pytest.raises(InvalidArgument, match="nested 41 elements deep"):
        decode.parse(deep, 8)


@pytest.mark.parametrize(("name", "given", "district", "expected"), [
    ("GB/T 2260", "310104", "310104", True),
    ("gb/t2260", "310000", "310104", True),  # Shanghai names its districts
    ("GB/T 2260", "310100", "310104", True),
    ("GB/T 2260", "310104001", "310104", True),  # a township names its district
    ("GB/T 2260", "310105", "310104", False),  # Changning
    ("GB/T 2260", "320000", "310104", False),
    ("SAME", "006037", "006037", True),
    ("SAME", "106037", "006037", True),  # a part of the county
    ("SAME", "006000", "006037", True),  # the whole state
    ("SAME", "006109", "006037", False),
    ("UGC", "CAZ017", "CAZ017", True),
    ("UGC", "CAZ018", "CAZ017", False),
])
def test_an_administrative_code_names_the_district_its_scheme_nests_it_in(
        name: str, given: str, district: str, expected: bool) -> None:
    assert geocodes.matches(name, given, district) is expected


def test_the_four_examples_of_the_specification_are_read_with_every_info() -> None:
    advisory = decode.parse((DATA / "oasis_a1_homeland_security.xml").read_bytes(), 8)
    assert advisory.infos[0].areas[0].desc == "U.S. nationwide and interests worldwide"
    assert advisory.cells == () and advisory.level == L.WARNING_LEVEL_ORANGE
    storm = decode.parse((DATA / "oasis_a2_thunderstorm.xml").read_bytes(), 8)
    assert storm.hazard == "severe_thunderstorm"
    assert storm.infos[0].areas[0].geocodes == (("SAME", "006109"), ("SAME", "006009"),
                                                ("SAME", "006003"))
    quake = decode.parse((DATA / "oasis_a3_earthquake.xml").read_bytes(), 8)
    assert (quake.hazard, quake.msg_type, len(quake.cells)) == ("earthquake", "Update", 1)
    amber = decode.parse((DATA / "oasis_a4_amber.xml").read_bytes(), 8)
    assert [(i.language, i.hazard) for i in amber.infos] == [
        ("en-US", "child_abduction"), ("es-US", "child_abduction")]  # the same in Spanish


def test_an_alert_addressed_to_xuhuis_code_reaches_every_cell_of_the_district() -> None:
    store = city()
    answer = take(store, "xuhui_geocode_alert.xml")
    assert sorted(answer.grid_cells) == XUHUI_CELLS and not answer.unplaced
    assert len(answer.warning_ids) == len(XUHUI_CELLS)
    xujiahui = store.find(HazardWatch, watch_id_of(grid.cell_of(GRID.cells[0].location),
                                                   "heavy_rain")).warning
    assert xujiahui.level == L.WARNING_LEVEL_YELLOW
    assert (xujiahui.responsible.grid_officer, xujiahui.responsible.duty_officer) == (
        "wang-fang", "xuhui-duty-officer")
    kept = alert_of(store, "warnings@weather.sh.example", "SH-MET-2025-0801-XH1")
    assert [i.language for i in kept.infos] == ["zh-CN", "en-US"]
    assert kept.infos[0].headline == "徐汇区暴雨黄色预警"
    assert kept.status == S.CAP_ALERT_STATUS_PLACED


def test_an_area_too_wide_to_fill_reaches_the_grid_cells_inside_it() -> None:
    store = city()
    felt = (DATA / "earthquake_circle.xml").read_bytes().replace(b" 1.0<", b" 150<")
    incoming = decode.parse(felt, 8)
    assert incoming.cells == () and len(incoming.infos[0].areas[0].wide) == 1
    answer, _ = intake.import_alert(store, incoming, 8, cause(), START)  # type: ignore[arg-type]
    assert sorted(answer.grid_cells) == XUHUI_CELLS
    california = decode.parse((DATA / "oasis_a2_thunderstorm.xml").read_bytes().replace(
        b"38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14",
        b"42,-124 32,-124 32,-114 42,-114 42,-124"), 8)
    assert california.infos[0].areas[0].wide
    assert intake.import_alert(store, california, 8, cause(), START)[0].unplaced  # type: ignore[arg-type]


def test_an_update_naming_no_place_keeps_its_chains_cells_and_a_cancel_ends_it() -> None:
    store = city()
    take(store, "xuhui_geocode_alert.xml")
    update = take(store, "xuhui_geocode_update.xml")
    assert sorted(update.grid_cells) == XUHUI_CELLS
    assert {level_on(store, c, "heavy_rain") for c in XUHUI_CELLS} == {L.WARNING_LEVEL_RED}
    first = alert_of(store, "warnings@weather.sh.example", "SH-MET-2025-0801-XH1")
    assert (first.status, first.superseded_by) == (S.CAP_ALERT_STATUS_UPDATED,
                                                   "SH-MET-2025-0801-XH2")
    take(store, "xuhui_geocode_cancel.xml")
    assert {level_on(store, c, "heavy_rain") for c in XUHUI_CELLS} == {0}
    assert alert_of(store, "warnings@weather.sh.example", "SH-MET-2025-0801-XH2").status == \
        S.CAP_ALERT_STATUS_CANCELLED


def test_an_alert_naming_no_known_place_waits_for_the_duty_party_to_place_it() -> None:
    store = city()
    answer = take(store, "oasis_a1_homeland_security.xml")
    assert (answer.unplaced, answer.duty_party, list(answer.grid_cells)) == (
        True, "city-emergency-office", [])
    kept = alert_of(store, "hsas@dhs.gov", "43b080713727")
    assert kept.status == S.CAP_ALERT_STATUS_UNPLACED
    source = "cap:hsas@dhs.gov/43b080713727"
    notified = store.find(Notification, notification_id_of(source, "city-emergency-office"))
    assert notified.waiting and notified.view.cell_name == \
        "U.S. nationwide and interests worldwide"
    assert [s for s, _ in store.events if ".notification." in s][-1] == \
        "lifeline.monitor.notification.city-emergency-office.notified"
    placed, changed = intake.place(store, "hsas@dhs.gov", "43b080713727", ["xuhui"], [], 8,  # type: ignore[arg-type]
                                   cause("duty-li"), START)
    store.record(*changed)
    assert placed.alert.status == S.CAP_ALERT_STATUS_PLACED and placed.alert.decided_by == \
        "duty-li"
    hazard = "homeland_security_advisory_system_update"
    assert {level_on(store, c, hazard) for c in XUHUI_CELLS} == {L.WARNING_LEVEL_ORANGE}
    assert notified.view.acknowledged_by == "duty-li"
    with pytest.raises(RuleViolation, match=r"cap-place-unplaced.*placed"):
        intake.place(store, "hsas@dhs.gov", "43b080713727", ["xuhui"], [], 8,  # type: ignore[arg-type]
                     cause("duty-li"), START)


def test_an_unplaced_alert_is_dismissed_with_a_reason_and_its_geocodes_kept() -> None:
    store = city()
    amber = take(store, "oasis_a4_amber.xml")
    assert amber.unplaced
    kept = alert_of(store, "KARO@CLETS.DOJ.CA.GOV", "KAR0-0306112239-SW")
    assert [(g.value_name, g.value) for g in kept.infos[0].geocodes] == [("SAME", "006037")]
    with pytest.raises(InvalidArgument, match="reason"):
        intake.dismiss(store, kept.sender, kept.identifier, " ", cause("duty-li"), START)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"districts\[0\].*no district 'changning'"):
        intake.place(store, kept.sender, kept.identifier, ["changning"], [], 8,  # type: ignore[arg-type]
                     cause("duty-li"), START)
    answer, changed = intake.dismiss(store, kept.sender, kept.identifier,  # type: ignore[arg-type]
                                     "Los Angeles is not Shanghai", cause("duty-li"), START)
    store.record(*changed)
    assert (answer.alert.status, answer.alert.reason) == (S.CAP_ALERT_STATUS_DISMISSED,
                                                          "Los Angeles is not Shanghai")
    assert not any(isinstance(a, HazardWatch) for a in store.aggregates.values())


def test_a_geocode_under_a_name_the_city_does_not_know_is_refused_when_the_grid_loads() -> None:
    district = pb.District(id="xuhui", geocodes=[pb.Geocode(value_name="ZIP", value="200030")])
    with pytest.raises(InvalidArgument, match=r"districts\[0\].geocodes\[0\].value_name"):
        grid.load_grid(Store(), [district], [], 8, cause("city-gis"), START)  # type: ignore[arg-type]
    index = grid.grid_index(city())  # type: ignore[arg-type]
    assert index is not None and index.city.duty_party == "city-emergency-office"
    assert [(g.value_name, g.value) for g in index.districts[0].geocodes] == [
        ("GB/T 2260", "310104")]


def test_cap_out_carries_the_districts_code_on_its_area_and_stays_valid() -> None:
    store = city()
    take(store, "xuhui_geocode_alert.xml")
    cell = grid.cell_of(GRID.cells[0].location)
    raised = next(w.raised for subject, w in store.events
                  if subject.endswith("warning.raised") and w.raised.grid_cell == cell)
    feed_ = feed.published(store, "raised", raised, cause(), START)  # type: ignore[arg-type]
    alerts = [feed_[0].last]
    document = etree.fromstring(alerts[-1].xml)
    assert oasis().validate(document)
    codes = [(g.findtext(f"{{{NS}}}valueName"), g.findtext(f"{{{NS}}}value"))
             for g in document.iter(f"{{{NS}}}geocode")]
    assert codes == [("GB/T 2260", "310104"), ("H3", cell)]
    assert encode.SENDER in alerts[-1].xml.decode()
