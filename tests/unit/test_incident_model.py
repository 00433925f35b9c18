"""The incident lifecycle as dispatch records it and review replays it.

Pure domain tests: the Incident aggregate is a plain Python object, every time is field time
from a SimulationClock, and the recorded history is checked through the public protobuf
messages it carries.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.errors import RuleViolation
from lifeline.events import Cause, event_of, from_json, from_timestamp, meta_of, to_json
from lifeline.incident.model import Incident, IncidentState, incident_id_for_warning
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline_dispatch.domain import requirements_for

S = pb.IncidentState
U = common_pb2.UnitStatus
WARNING_ID = "3123_12147/urban_flooding/1"
GRID_CELL = "3123_12147"
PEOPLES_SQUARE = common_pb2.GeoPoint(lat=31.2317, lon=121.4733)
#: A flood in the small hours of a July morning, Shanghai time.
FIELD_START = datetime(2024, 7, 1, 6, 0, tzinfo=UTC) + timedelta(hours=-8)
#: Wall-clock time of recording: deliberately far from field time, so a mix-up shows.
WALL_START = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)


class Field:
    """Field time from a simulation clock, and a separate wall clock for recorded_at."""

    def __init__(self) -> None:
        self.clock = SimulationClock(FIELD_START)
        self.wall = WALL_START

    def cause(self, actor: str = "operator", **kwargs: Any) -> Cause:
        return Cause(actor=actor, occurred_at=self.clock.now(), **kwargs)

    def now(self) -> datetime:
        self.wall += timedelta(seconds=1)
        return self.wall

    def advance(self, **delta: float) -> datetime:
        return self.clock.advance(timedelta(**delta))


def open_incident(field: Field, warning_id: str = WARNING_ID, **cause: Any) -> Incident:
    cause.setdefault("correlation_id", warning_id)  # as dispatch's warning consumer does
    return Incident.open_for_warning(warning_id, "urban_flooding",
                                     common_pb2.WARNING_LEVEL_ORANGE, PEOPLES_SQUARE, GRID_CELL,
                                     field.cause("monitor", **cause), field.now())


def declare(incident: Incident, field: Field, grade: int = pb.GRADE_II) -> None:
    incident.declare(pb.CATEGORY_NATURAL_DISASTER, "urban_flooding", grade,
                     requirements_for("urban_flooding", grade), field.cause(), field.now())


def assign(incident: Incident, field: Field, unit_id: str, kind: str = "pump_truck",
           distance: float = 2.5) -> bool:
    return incident.assign_unit("req-1", unit_id, kind, distance, field.cause("dispatch"),
                                field.now())


def status(incident: Incident, field: Field, unit_id: str, unit_status: int) -> bool:
    return incident.report_unit_status(unit_id, unit_status, field.cause(f"unit:{unit_id}"),
                                       field.now())


def wrappers(incident: Incident) -> list[pb.IncidentEvent]:
    """The pending events as the public messages they carry."""
    return [Incident.decode(e.payload) for e in incident.collect_events()]


def fields(history: list[pb.IncidentEvent]) -> list[str]:
    return [event_of(w)[0] for w in history]


def responding(field: Field) -> Incident:
    incident = open_incident(field)
    field.advance(minutes=12)
    declare(incident, field)
    field.advance(minutes=3)
    assert assign(incident, field, "P-7")
    return incident


# ---- opening ----


def test_one_incident_per_warning_however_often_it_is_delivered() -> None:
    field = Field()
    first = open_incident(field)
    again = open_incident(field)
    other = open_incident(field, "3123_12147/urban_flooding/2")

    assert first.id == again.id == incident_id_for_warning(WARNING_ID)
    assert isinstance(first.id, UUID)
    assert other.id != first.id
    assert first.view.id == str(first.id)


def test_an_opened_incident_is_a_warning_at_the_warning_place_and_time() -> None:
    field = Field()
    incident = open_incident(field)

    v = incident.view
    assert v.state == S.INCIDENT_STATE_WARNING
    assert (v.warning_id, v.hazard, v.grid_cell) == (WARNING_ID, "urban_flooding", GRID_CELL)
    assert v.warning_level == common_pb2.WARNING_LEVEL_ORANGE
    assert v.location == PEOPLES_SQUARE
    assert from_timestamp(v.opened_at) == FIELD_START
    assert v.version == 1
    assert not v.units


# ---- declaring ----


def test_declare_makes_it_declared_and_requests_the_units_the_plan_needs() -> None:
    field = Field()
    incident = open_incident(field)
    field.advance(minutes=12)
    declare(incident, field, pb.GRADE_II)

    v = incident.view
    assert v.state == S.INCIDENT_STATE_DECLARED
    assert v.category == pb.CATEGORY_NATURAL_DISASTER
    assert (v.hazard_type, v.grade) == ("urban_flooding", pb.GRADE_II)
    assert from_timestamp(v.declared_at) == FIELD_START + timedelta(minutes=12)

    history = wrappers(incident)
    assert fields(history) == ["opened", "declared", "resources_requested"]
    requested = history[2].resources_requested
    assert list(requested.requirements) == requirements_for("urban_flooding", pb.GRADE_II)
    assert {r.unit_kind: r.count for r in requested.requirements} == {
        "rescue_team": 2, "pump_truck": 2, "ambulance": 2, "police_car": 2}
    assert requested.location == PEOPLES_SQUARE
    assert requested.request_id
    # The request was caused by the declaration just before it.
    assert requested.meta.causation_id == f"{incident.id}/2"


def test_declare_without_requirements_requests_nothing() -> None:
    field = Field()
    incident = open_incident(field)
    incident.declare(pb.CATEGORY_SOCIAL_SAFETY, "crowd", pb.GRADE_IV, [], field.cause(),
                     field.now())

    assert incident.view.state == S.INCIDENT_STATE_DECLARED
    assert fields(wrappers(incident)) == ["opened", "declared"]


# ---- units ----


def test_first_assigned_unit_makes_the_incident_responding() -> None:
    field = Field()
    incident = open_incident(field)
    declare(incident, field)
    field.advance(minutes=3)

    assert assign(incident, field, "P-7", "pump_truck", 3.2)

    v = incident.view
    assert v.state == S.INCIDENT_STATE_RESPONDING
    [unit] = v.units
    assert (unit.unit_id, unit.unit_kind, unit.distance_km) == ("P-7", "pump_truck", 3.2)
    assert unit.status == U.UNIT_STATUS_ASSIGNED
    assert not unit.released
    assert from_timestamp(unit.assigned_at) == FIELD_START + timedelta(minutes=3)

    assert assign(incident, field, "A-1", "ambulance")
    assert v.state == S.INCIDENT_STATE_RESPONDING
    assert [u.unit_id for u in v.units] == ["P-7", "A-1"]


def test_assigning_the_same_unit_again_changes_nothing() -> None:
    field = Field()
    incident = responding(field)
    incident.collect_events()
    before = pb.Incident()
    before.CopyFrom(incident.view)

    field.advance(minutes=1)
    assert assign(incident, field, "P-7") is False

    assert incident.collect_events() == []
    assert incident.view == before


def test_no_unit_is_assigned_to_an_incident_not_yet_declared() -> None:
    field = Field()
    incident = open_incident(field)
    incident.collect_events()

    assert assign(incident, field, "P-7") is False
    assert incident.collect_events() == []
    assert incident.view.state == S.INCIDENT_STATE_WARNING
    assert not incident.view.units


def test_units_report_en_route_then_on_scene_at_field_time() -> None:
    field = Field()
    incident = responding(field)
    field.advance(minutes=5)
    assert status(incident, field, "P-7", U.UNIT_STATUS_EN_ROUTE)
    assert incident.view.units[0].status == U.UNIT_STATUS_EN_ROUTE
    assert not incident.view.units[0].HasField("on_scene_at")

    arrived = field.advance(minutes=17)
    assert status(incident, field, "P-7", U.UNIT_STATUS_ON_SCENE)
    unit = incident.view.units[0]
    assert unit.status == U.UNIT_STATUS_ON_SCENE
    assert from_timestamp(unit.on_scene_at) == arrived

    # Moving off and back on scene keeps the first arrival (that is the response time).
    field.advance(minutes=20)
    assert status(incident, field, "P-7", U.UNIT_STATUS_EN_ROUTE)
    field.advance(minutes=20)
    assert status(incident, field, "P-7", U.UNIT_STATUS_ON_SCENE)
    assert from_timestamp(incident.view.units[0].on_scene_at) == arrived


def test_status_reports_that_change_nothing_are_ignored() -> None:
    field = Field()
    incident = responding(field)
    assert status(incident, field, "P-7", U.UNIT_STATUS_EN_ROUTE)
    incident.collect_events()

    assert status(incident, field, "P-7", U.UNIT_STATUS_EN_ROUTE) is False  # a repeat
    assert status(incident, field, "X-99", U.UNIT_STATUS_ON_SCENE) is False  # not ours
    # Available / out of service are resources' business, not a report to the incident.
    assert status(incident, field, "P-7", U.UNIT_STATUS_AVAILABLE) is False
    assert status(incident, field, "P-7", U.UNIT_STATUS_OUT_OF_SERVICE) is False
    assert incident.collect_events() == []
    assert incident.view.units[0].status == U.UNIT_STATUS_EN_ROUTE


def test_a_released_unit_is_kept_listed_and_reports_nothing_more() -> None:
    field = Field()
    incident = responding(field)
    assert incident.release_unit("P-7", field.cause("resources"), field.now())
    unit = incident.view.units[0]
    assert unit.released and unit.status == U.UNIT_STATUS_AVAILABLE
    assert incident.release_unit("P-7", field.cause("resources"), field.now()) is False
    assert status(incident, field, "P-7", U.UNIT_STATUS_ON_SCENE) is False
    assert incident.state.deployed_units() == []


def test_a_unit_released_and_assigned_again_reports_its_status() -> None:
    field = Field()
    incident = responding(field)
    assert incident.release_unit("P-7", field.cause("resources"), field.now())
    field.advance(minutes=30)
    assert assign(incident, field, "P-7")  # resources gives it back for a new request

    assert status(incident, field, "P-7", U.UNIT_STATUS_EN_ROUTE)
    assert [u.status for u in incident.view.units if not u.released] == [
        U.UNIT_STATUS_EN_ROUTE]


def test_close_releases_a_unit_that_was_assigned_a_second_time() -> None:
    field = Field()
    incident = responding(field)
    assert incident.release_unit("P-7", field.cause("resources"), field.now())
    assert assign(incident, field, "P-7")
    assert assign(incident, field, "P-7") is False  # a repeat of the second assignment

    for step in (incident.contain, incident.start_recovery, incident.complete_recovery,
                 incident.close):
        step(field.cause(), field.now())
    assert incident.state.deployed_units() == []


# ---- the lifecycle ----


def test_the_whole_lifecycle_in_order() -> None:
    field = Field()
    incident = responding(field)
    for step, state in ((Incident.contain, S.INCIDENT_STATE_CONTAINED),
                        (Incident.start_recovery, S.INCIDENT_STATE_RECOVERING),
                        (Incident.complete_recovery, S.INCIDENT_STATE_RECOVERED),
                        (Incident.close, S.INCIDENT_STATE_CLOSED)):
        at = field.advance(hours=1)
        step(incident, field.cause(), field.now())
        assert incident.view.state == state
    v = incident.view
    assert from_timestamp(v.contained_at) == FIELD_START + timedelta(minutes=15, hours=1)
    assert from_timestamp(v.recovery_started_at) == FIELD_START + timedelta(minutes=15, hours=2)
    assert from_timestamp(v.recovered_at) == FIELD_START + timedelta(minutes=15, hours=3)
    assert from_timestamp(v.closed_at) == at
    assert from_timestamp(v.updated_at) == at


def test_contain_is_allowed_straight_from_declared() -> None:
    field = Field()
    incident = open_incident(field)
    declare(incident, field)
    incident.contain(field.cause(), field.now())
    assert incident.view.state == S.INCIDENT_STATE_CONTAINED


def test_a_false_alarm_is_dismissed_from_warning() -> None:
    field = Field()
    incident = open_incident(field)
    at = field.advance(minutes=20)
    incident.dismiss(field.cause(reason="gauge blocked by debris"), field.now())
    assert incident.view.state == S.INCIDENT_STATE_DISMISSED
    assert from_timestamp(incident.view.dismissed_at) == at
    assert wrappers(incident)[-1].dismissed.meta.reason == "gauge blocked by debris"


STEPS = {
    "declare": lambda i, f: declare(i, f),
    "contain": lambda i, f: i.contain(f.cause(), f.now()),
    "start_recovery": lambda i, f: i.start_recovery(f.cause(), f.now()),
    "complete_recovery": lambda i, f: i.complete_recovery(f.cause(), f.now()),
    "close": lambda i, f: i.close(f.cause(), f.now()),
    "dismiss": lambda i, f: i.dismiss(f.cause(), f.now()),
}
RULES = {
    "declare": "declare-from-warning",
    "contain": "contain-after-declare",
    "start_recovery": "recover-after-contain",
    "complete_recovery": "recovered-after-recovering",
    "close": "close-after-recovery",
    "dismiss": "dismiss-from-warning",
}
#: The steps that bring a fresh incident to each state.
PATHS = {
    "WARNING": [],
    "DECLARED": ["declare"],
    "CONTAINED": ["declare", "contain"],
    "RECOVERING": ["declare", "contain", "start_recovery"],
    "RECOVERED": ["declare", "contain", "start_recovery", "complete_recovery"],
    "CLOSED": ["declare", "contain", "start_recovery", "complete_recovery", "close"],
    "DISMISSED": ["dismiss"],
}
ALLOWED = {
    "WARNING": {"declare", "dismiss"},
    "DECLARED": {"contain"},
    "CONTAINED": {"start_recovery"},
    "RECOVERING": {"complete_recovery"},
    "RECOVERED": {"close"},
    "CLOSED": set(),
    "DISMISSED": set(),
}
ILLEGAL = [(state, step) for state in PATHS for step in STEPS if step not in ALLOWED[state]]


@pytest.mark.parametrize(("state", "step"), ILLEGAL, ids=[f"{s}-{t}" for s, t in ILLEGAL])
def test_an_illegal_step_is_refused_naming_its_rule_and_records_nothing(
        state: str, step: str) -> None:
    field = Field()
    incident = open_incident(field)
    for name in PATHS[state]:
        STEPS[name](incident, field)
    assert S.Name(incident.view.state) == f"INCIDENT_STATE_{state}"
    incident.collect_events()
    before = pb.Incident()
    before.CopyFrom(incident.view)

    with pytest.raises(RuleViolation) as refused:
        STEPS[step](incident, field)

    assert refused.value.rule == RULES[step]
    assert RULES[step] in str(refused.value)
    assert state in str(refused.value)  # and says what state the incident is in
    assert incident.collect_events() == []
    assert incident.view == before


@pytest.mark.parametrize(("state", "step"), [(s, t) for s in PATHS for t in ALLOWED[s]])
def test_each_allowed_step_is_accepted(state: str, step: str) -> None:
    field = Field()
    incident = open_incident(field)
    for name in PATHS[state]:
        STEPS[name](incident, field)
    STEPS[step](incident, field)


def test_close_releases_every_deployed_unit_before_closing() -> None:
    field = Field()
    incident = responding(field)  # P-7
    assert assign(incident, field, "A-1", "ambulance")
    assert assign(incident, field, "R-3", "rescue_team")
    assert status(incident, field, "A-1", U.UNIT_STATUS_ON_SCENE)
    assert incident.release_unit("R-3", field.cause("resources"), field.now())
    for step in ("contain", "start_recovery", "complete_recovery"):
        STEPS[step](incident, field)
    incident.collect_events()

    closed_at = field.advance(hours=1)
    incident.close(field.cause(), field.now())

    history = wrappers(incident)
    assert fields(history) == ["unit_released", "unit_released", "closed"]
    # R-3 was already released: it is not released twice.
    assert [w.unit_released.unit_id for w in history[:2]] == ["P-7", "A-1"]
    assert all(from_timestamp(meta_of(w).occurred_at) == closed_at for w in history)
    assert incident.state.deployed_units() == []
    assert all(u.released and u.status == U.UNIT_STATUS_AVAILABLE for u in incident.view.units)


def test_a_dismissed_incident_refuses_everything() -> None:
    field = Field()
    incident = open_incident(field)
    incident.dismiss(field.cause(), field.now())
    incident.collect_events()
    before = pb.Incident()
    before.CopyFrom(incident.view)

    for step in STEPS:
        with pytest.raises(RuleViolation):
            STEPS[step](incident, field)
    assert assign(incident, field, "P-7") is False
    assert status(incident, field, "P-7", U.UNIT_STATUS_ON_SCENE) is False
    assert incident.release_unit("P-7", field.cause(), field.now()) is False
    incident.change_warning_level(common_pb2.WARNING_LEVEL_RED, field.cause(), field.now())
    incident.clear_warning(field.cause(), field.now())
    incident.record_shortfall("req-1", "pump_truck", 1, field.cause(), field.now())

    assert incident.collect_events() == []
    assert incident.view == before


def test_the_warning_behind_an_open_incident_changes_and_clears() -> None:
    field = Field()
    incident = open_incident(field)
    incident.change_warning_level(common_pb2.WARNING_LEVEL_RED, field.cause(), field.now())
    incident.change_warning_level(common_pb2.WARNING_LEVEL_RED, field.cause(), field.now())
    assert incident.view.warning_level == common_pb2.WARNING_LEVEL_RED
    incident.clear_warning(field.cause(), field.now())
    incident.clear_warning(field.cause(), field.now())
    assert incident.view.warning_level == common_pb2.WARNING_LEVEL_NONE
    # Repeats record nothing; the incident itself stays a warning until someone decides.
    assert fields(wrappers(incident)) == ["opened", "warning_level_changed", "warning_cleared"]
    assert incident.view.state == S.INCIDENT_STATE_WARNING


# ---- the recorded history ----


def six_hour_flood(field: Field) -> tuple[Incident, list[Cause], list[datetime]]:
    """A whole incident; returns the causes and `now`s given for each command, in order."""
    causes: list[Cause] = []
    nows: list[datetime] = []

    def cause(actor: str, **kwargs: Any) -> Cause:
        causes.append(field.cause(actor, **kwargs))
        return causes[-1]

    def now() -> datetime:
        nows.append(field.now())
        return nows[-1]

    incident = Incident.open_for_warning(
        WARNING_ID, "urban_flooding", common_pb2.WARNING_LEVEL_YELLOW, PEOPLES_SQUARE,
        GRID_CELL, cause("dispatch", correlation_id=WARNING_ID), now())
    field.advance(minutes=4)
    incident.change_warning_level(common_pb2.WARNING_LEVEL_ORANGE, cause("dispatch"), now())
    field.advance(minutes=8)
    incident.declare(pb.CATEGORY_NATURAL_DISASTER, "urban_flooding", pb.GRADE_III,
                     requirements_for("urban_flooding", pb.GRADE_III), cause("duty-officer"),
                     now())
    field.advance(minutes=2)
    incident.assign_unit("req-1", "P-7", "pump_truck", 2.1, cause("resources"), now())
    incident.assign_unit("req-1", "A-1", "ambulance", 4.0, cause("resources"), now())
    incident.record_shortfall("req-1", "rescue_team", 1, cause("resources"), now())
    field.advance(minutes=3)
    incident.report_unit_status("P-7", U.UNIT_STATUS_EN_ROUTE, cause("P-7"), now())
    field.advance(minutes=11)
    incident.report_unit_status("P-7", U.UNIT_STATUS_ON_SCENE, cause("P-7"), now())
    field.advance(minutes=6)
    incident.report_unit_status("A-1", U.UNIT_STATUS_ON_SCENE, cause("A-1"), now())
    field.advance(hours=2)
    incident.contain(cause("duty-officer", reason="water receding"), now())
    incident.clear_warning(cause("dispatch"), now())
    field.advance(minutes=30)
    incident.start_recovery(cause("duty-officer"), now())
    field.advance(hours=2)
    incident.complete_recovery(cause("duty-officer"), now())
    field.advance(minutes=56)
    incident.close(cause("duty-officer"), now())
    return incident, causes, nows


def test_the_six_hour_flood_takes_six_hours_of_field_time() -> None:
    field = Field()
    incident, _, _ = six_hour_flood(field)
    v = incident.view
    assert v.state == S.INCIDENT_STATE_CLOSED
    assert from_timestamp(v.closed_at) - from_timestamp(v.opened_at) == timedelta(hours=6)
    assert len(v.shortfalls) == 1 and v.shortfalls[0].count == 1


def test_every_event_carries_its_meta() -> None:
    field = Field()
    incident, causes, nows = six_hour_flood(field)
    history = wrappers(incident)
    names = fields(history)
    assert names == [
        "opened", "warning_level_changed", "declared", "resources_requested",
        "unit_assigned", "unit_assigned", "resource_shortfall", "unit_status_reported",
        "unit_status_reported", "unit_status_reported", "contained", "warning_cleared",
        "recovery_started", "recovered", "unit_released", "unit_released", "closed"]

    # Which command (by index into causes/nows) recorded each event: declare records two,
    # close records three.
    command_of = [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 13, 13]
    for n, (wrapper, command) in enumerate(zip(history, command_of, strict=True), start=1):
        meta = meta_of(wrapper)
        cause = causes[command]
        assert meta.aggregate_id == str(incident.id)
        assert meta.sequence == n
        assert from_timestamp(meta.occurred_at) == cause.occurred_at, names[n - 1]
        assert from_timestamp(meta.recorded_at) == nows[command], names[n - 1]
        assert meta.actor == cause.actor
        assert meta.reason == cause.reason
        assert meta.correlation_id == WARNING_ID, names[n - 1]
    # Field time is not the wall clock: a replayed drill keeps its own times.
    assert all(meta_of(w).occurred_at != meta_of(w).recorded_at for w in history)


def test_recorded_events_are_the_aggregate_versions() -> None:
    field = Field()
    incident, _, _ = six_hour_flood(field)
    events = incident.collect_events()
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
    assert incident.version == len(events) == incident.view.version


@pytest.mark.parametrize("how", ["warning", "report"])
def test_the_first_event_belongs_to_the_chain_it_starts(how: str) -> None:
    field = Field()
    if how == "warning":
        incident = Incident.open_for_warning(
            WARNING_ID, "urban_flooding", common_pb2.WARNING_LEVEL_ORANGE, PEOPLES_SQUARE,
            GRID_CELL, field.cause("dispatch"), field.now())
        chain = WARNING_ID
    else:
        incident_id = UUID("8c6f7f7e-3d0e-4b52-9a43-0d8f1f2b6a11")
        incident = Incident.report(incident_id, "gas_leak", PEOPLES_SQUARE, "smell of gas",
                                   "110 call", GRID_CELL, field.cause("call-taker"),
                                   field.now())
        chain = str(incident_id)
    incident.dismiss(field.cause(), field.now())

    correlations = [meta_of(w).correlation_id for w in wrappers(incident)]
    assert correlations == [chain, chain]


def test_replaying_the_recorded_events_gives_the_aggregate_view() -> None:
    field = Field()
    incident, _, _ = six_hour_flood(field)
    history = wrappers(incident)

    replayed = IncidentState.replay(history)

    assert replayed.view == incident.view
    assert replayed.view.version == len(history)
    # Through canonical JSON and back, as review receives them over NATS or NDJSON.
    received = [from_json(to_json(w), pb.IncidentEvent) for w in history]
    assert IncidentState.replay(received).view == incident.view


def test_every_prefix_of_the_history_replays_to_the_state_at_that_time() -> None:
    field = Field()
    incident = open_incident(field)
    declare(incident, field)
    views = [pb.Incident()]
    history: list[pb.IncidentEvent] = []
    for step in ("assign", "on_scene", "contain", "start_recovery", "complete_recovery",
                 "close"):
        history += wrappers(incident)
        views.append(pb.Incident())
        views[-1].CopyFrom(incident.view)
        field.advance(minutes=30)
        if step == "assign":
            assign(incident, field, "P-7")
        elif step == "on_scene":
            status(incident, field, "P-7", U.UNIT_STATUS_ON_SCENE)
        else:
            STEPS[step](incident, field)
    history += wrappers(incident)

    for n in range(len(history) + 1):
        state = IncidentState.replay(history[:n])
        assert state.view.version == n
    assert IncidentState.replay(history).view == incident.view
    replay_states = [IncidentState.replay(history[:int(v.version)]).view for v in views]
    assert replay_states == views


def test_a_history_with_a_gap_or_a_repeat_is_refused() -> None:
    field = Field()
    incident = responding(field)
    history = wrappers(incident)
    assert len(history) == 4

    with pytest.raises(ValueError, match="gap or a repeat"):
        IncidentState.replay([history[0], history[2]])
    with pytest.raises(ValueError, match="gap or a repeat"):
        IncidentState.replay([history[0], history[1], history[1]])
    with pytest.raises(ValueError, match="gap or a repeat"):
        IncidentState.replay(history[1:])  # does not start at 1

    state = IncidentState.replay(history[:2])
    with pytest.raises(ValueError):
        state.apply(history[3])
    assert state.view.version == 2  # the refused event changed nothing
    state.apply(history[2])
    state.apply(history[3])
    assert state.view == incident.view


def test_a_history_written_by_a_newer_version_still_replays() -> None:
    field = Field()
    incident = open_incident(field)
    declare(incident, field)
    payloads = [e.payload for e in incident.collect_events()]
    # A newer writer added fields this reader does not know.
    payloads[1]["declared"]["priorityHint"] = "high"
    payloads[1]["declared"]["meta"]["tenant"] = "pudong"

    replayed = IncidentState.replay(Incident.decode(p) for p in payloads)

    assert replayed.view == incident.view


def test_an_empty_wrapper_is_refused() -> None:
    with pytest.raises(ValueError, match="empty IncidentEvent"):
        IncidentState().apply(pb.IncidentEvent())


# ---- property: any sequence of commands keeps the lifecycle rules ----

ORDER = [S.INCIDENT_STATE_WARNING, S.INCIDENT_STATE_DECLARED, S.INCIDENT_STATE_RESPONDING,
         S.INCIDENT_STATE_CONTAINED, S.INCIDENT_STATE_RECOVERING, S.INCIDENT_STATE_RECOVERED,
         S.INCIDENT_STATE_CLOSED]
UNIT_IDS = ["P-1", "P-2", "A-1", "E-4"]
UNIT_STATUSES = list(U.values())
GRADES = [pb.GRADE_I, pb.GRADE_II, pb.GRADE_III, pb.GRADE_IV]
HAZARDS = ["urban_flooding", "high_rise_fire", "gas_leak", "traffic_accident"]
LEVELS = list(common_pb2.WarningLevel.values())

declares = st.tuples(st.just("declare"), st.sampled_from(HAZARDS), st.sampled_from(GRADES))
steps = st.tuples(st.sampled_from(["contain", "start_recovery", "complete_recovery", "close"]))
assigns = st.tuples(st.just("assign"), st.sampled_from(UNIT_IDS),
                    st.floats(0, 50, allow_nan=False))
statuses = st.tuples(st.just("status"), st.sampled_from(UNIT_IDS),
                     st.sampled_from(UNIT_STATUSES))
# "advance" is the next step of the usual path from whatever state the incident is in, so
# that many examples get past declaration, through recovery, to closing; every other
# command is drawn regardless of the state.
advances = st.tuples(st.just("advance"), st.sampled_from(HAZARDS), st.sampled_from(GRADES))
commands = st.lists(st.one_of(
    advances, advances, advances, declares, steps, assigns, assigns, statuses, statuses,
    st.tuples(st.just("release"), st.sampled_from(UNIT_IDS)),
    st.tuples(st.just("shortfall"), st.sampled_from(["ambulance", "pump_truck"]),
              st.integers(1, 3)),
    st.tuples(st.just("warning_level"), st.sampled_from(LEVELS)),
    st.tuples(st.just("clear_warning")),
    st.tuples(st.just("dismiss")),
), min_size=10, max_size=40)


NEXT = {S.INCIDENT_STATE_WARNING: "declare", S.INCIDENT_STATE_DECLARED: "contain",
        S.INCIDENT_STATE_RESPONDING: "contain", S.INCIDENT_STATE_CONTAINED: "start_recovery",
        S.INCIDENT_STATE_RECOVERING: "complete_recovery",
        S.INCIDENT_STATE_RECOVERED: "close"}


def rank(state: int) -> int:
    return ORDER.index(state)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=commands, minutes=st.lists(st.integers(0, 90), min_size=40, max_size=40))
def test_any_command_sequence_keeps_the_lifecycle_rules(
        commands: list[tuple[Any, ...]], minutes: list[int]) -> None:
    field = Field()
    incident = open_incident(field)
    history = wrappers(incident)
    released: set[str] = set()
    ever_declared = False

    for (name, *args), wait in zip(commands, minutes, strict=False):
        if name == "advance":
            name = NEXT.get(incident.view.state, "close")
        field.advance(minutes=wait)
        cause, now = field.cause(), field.now()
        before = pb.Incident()
        before.CopyFrom(incident.view)
        try:
            if name == "declare":
                hazard, grade = args
                incident.declare(pb.CATEGORY_NATURAL_DISASTER, hazard, grade,
                                 requirements_for(hazard, grade), cause, now)
            elif name == "assign":
                unit_id, distance = args
                incident.assign_unit("req", unit_id, "pump_truck", distance, cause, now)
            elif name == "status":
                incident.report_unit_status(args[0], args[1], cause, now)
            elif name == "release":
                if incident.release_unit(args[0], cause, now):
                    released.add(args[0])
            elif name == "shortfall":
                incident.record_shortfall("req", args[0], args[1], cause, now)
            elif name == "warning_level":
                incident.change_warning_level(args[0], cause, now)
            elif name == "clear_warning":
                incident.clear_warning(cause, now)
            else:
                getattr(incident, name)(cause, now)
        except RuleViolation:
            # A refused command records nothing and changes nothing.
            assert incident.collect_events() == []
            assert incident.view == before
            continue
        new = wrappers(incident)
        history += new
        v = incident.view

        # The lifecycle never goes backwards; dismissal only ever follows a warning.
        if v.state == S.INCIDENT_STATE_DISMISSED:
            assert before.state in (S.INCIDENT_STATE_WARNING, S.INCIDENT_STATE_DISMISSED)
        else:
            assert before.state != S.INCIDENT_STATE_DISMISSED
            assert rank(v.state) >= rank(before.state)
        ever_declared = ever_declared or any(event_of(w)[0] == "declared" for w in new)
        if v.state == S.INCIDENT_STATE_DISMISSED:
            assert not ever_declared
            assert not v.HasField("declared_at")
        if v.state == S.INCIDENT_STATE_CLOSED:
            assert incident.state.deployed_units() == []
        if v.state in (S.INCIDENT_STATE_WARNING, S.INCIDENT_STATE_DISMISSED):
            assert not v.units
        assert len({u.unit_id for u in incident.state.deployed_units()}) == len(
            incident.state.deployed_units())

        # The recorded history is gap-free and replays to exactly this view.
        assert [meta_of(w).sequence for w in history] == list(range(1, len(history) + 1))
        assert all(meta_of(w).correlation_id == WARNING_ID for w in history)
        assert IncidentState.replay(history).view == v
    for n in range(len(history) + 1):
        assert IncidentState.replay(history[:n]).view.version == n
    event(f"ended {S.Name(incident.view.state)}")
