"""Old histories still replay: schema changes are additive, and a renamed field or value
ships an upcaster, so a history written before the change folds to the same state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format
from lifeline.common.v1 import common_pb2
from lifeline.events import UPCASTERS, Cause, from_json, register_upcaster, to_json
from lifeline.incident.aggregate import Incident
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2 as pb

from tests.unit.fixtures import response_for

START = datetime(2026, 7, 20, 6, 0, tzinfo=UTC)


def history() -> list[pb.IncidentEvent]:
    """A short flood history written with today's schema."""
    t = START

    def cause(minutes: int, actor: str = "officer") -> Cause:
        return Cause(actor, t + timedelta(minutes=minutes))

    incident = Incident.open_for_warning("3119_12143/urban_flooding/1", "urban_flooding",
                                         common_pb2.WARNING_LEVEL_ORANGE,
                                         common_pb2.GeoPoint(lat=31.19, lon=121.43),
                                         "3119_12143", cause(0, "monitor"), t)
    incident.declare(pb.CATEGORY_NATURAL_DISASTER, "urban_flooding", pb.GRADE_III,
                     response_for("urban_flooding", pb.GRADE_III), cause(20), t)
    incident.assign_unit("r-1", "pump-1", "pump_truck", 1.2, cause(21, "resources"), t)
    incident.report_unit_status("pump-1", common_pb2.UNIT_STATUS_ON_SCENE, cause(35), t)
    incident.contain(cause(90), t)
    return [incident.decode(e.payload) for e in incident.collect_events()]  # type: ignore[attr-defined,misc]


@pytest.fixture
def upcasters() -> Iterator[None]:
    saved = {k: list(v) for k, v in UPCASTERS.items()}
    yield
    UPCASTERS.clear()
    UPCASTERS.update(saved)


def as_old_schema(event: pb.IncidentEvent) -> dict[str, Any]:
    """The JSON the schema before the change wrote: the category value had another name
    (CATEGORY_NATURAL), and `gridCell` and `distanceKm` did not exist yet."""
    data = json_format.MessageToDict(event)
    for body in data.values():
        body.pop("gridCell", None)
        body.pop("distanceKm", None)
        if body.get("category") == "CATEGORY_NATURAL_DISASTER":
            body["category"] = "CATEGORY_NATURAL"
    return data


def rename_category(data: dict[str, Any]) -> dict[str, Any]:
    """The upcaster that shipped with the rename CATEGORY_NATURAL -> _NATURAL_DISASTER."""
    declared = data.get("declared")
    if declared and declared.get("category") == "CATEGORY_NATURAL":
        declared = {**declared, "category": "CATEGORY_NATURAL_DISASTER"}
        data = {**data, "declared": declared}
    return data


def test_an_old_history_replays_to_the_same_state(upcasters: None) -> None:
    events = history()
    old = [as_old_schema(e) for e in events]
    assert old[1]["declared"]["category"] == "CATEGORY_NATURAL"  # the old shape, really

    # Without the upcaster the renamed value would be lost (read as unspecified)...
    lost = from_json(old[1], pb.IncidentEvent)
    assert lost.declared.category == pb.CATEGORY_UNSPECIFIED  # type: ignore[attr-defined]

    register_upcaster(pb.IncidentEvent, rename_category)
    replayed = IncidentState.replay(from_json(d, pb.IncidentEvent) for d in old)  # type: ignore[misc]
    today = IncidentState.replay(events)

    # ...with it, the old history gives the same state, new fields at their defaults.
    expected = pb.Incident()
    expected.CopyFrom(today.view)
    expected.grid_cell = ""
    for unit in expected.units:
        unit.distance_km = 0.0
    assert replayed.view == expected
    assert replayed.view.category == pb.CATEGORY_NATURAL_DISASTER
    assert replayed.view.state == pb.INCIDENT_STATE_CONTAINED


def test_a_newer_history_replays_in_an_older_reader() -> None:
    """A field added by a newer writer (rolling upgrade) is ignored by the stored-event
    reader, and refused by a strict import, which names it."""
    events = history()
    newer = [to_json(e) for e in events]
    newer[0]["opened"]["floodDepthCm"] = 45  # a field this version does not know
    replayed = IncidentState.replay(from_json(d, pb.IncidentEvent) for d in newer)  # type: ignore[misc]
    assert replayed.view == IncidentState.replay(events).view
    with pytest.raises(json_format.ParseError, match="floodDepthCm"):
        from_json(newer[0], pb.IncidentEvent, strict=True)
