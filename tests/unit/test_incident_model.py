"""The incident lifecycle as dispatch records it and review replays it.

Pure domain tests: the Incident aggregate is a plain Python object, every time is field time
from a SimulationClock, and the recorded history is checked through the public protobuf
messages it carries.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, event_of, from_json, from_timestamp, meta_of, to_json
from lifeline.incident.aggregate import Incident, incident_id_for_warning
from lifeline.incident.deadlines import due_deadlines
from lifeline.incident.phases import ACTIVE, AFTER_CONTAINMENT
from lifeline.incident.response import PlanOrder, Response
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2 as pb

from tests.unit.fixtures import response_for

S = pb.IncidentState


def release_and_close(incident: Incident, cause: Cause, now: datetime) -> None:
    """Units go home first; a deployed unit keeps an incident open."""
    if incident.view.state in ACTIVE:
        incident.release_units([], cause, now)
    incident.close(cause, now)

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
                     response_for("urban_flooding", grade), field.cause(), field.now())


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
    # The declaring officer takes command; no plan here, so no orders.
    assert fields(history) == ["opened", "declared", "commander_assigned",
                               "resources_requested"]
    assert v.commander
    requested = history[3].resources_requested
    assert list(requested.requirements) == list(response_for("urban_flooding", pb.GRADE_II).units)
    assert {r.unit_kind: r.count for r in requested.requirements} == {
        "rescue_team": 2, "pump_truck": 2, "ambulance": 2, "police_car": 2}
    assert requested.location == PEOPLES_SQUARE
    assert requested.request_id
    # The request was caused by the declaration just before it.
    assert requested.meta.causation_id == f"{incident.id}/2"


def test_declare_without_requirements_requests_nothing() -> None:
    field = Field()
    incident = open_incident(field)
    incident.declare(pb.CATEGORY_SOCIAL_SAFETY, "crowd", pb.GRADE_IV, Response(units=[]),
                     field.cause(), field.now())

    assert incident.view.state == S.INCIDENT_STATE_DECLARED
    # The declaring officer takes command; nothing is requested.
    assert fields(wrappers(incident)) == ["opened", "declared", "commander_assigned"]


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
    v = incident.view  # a view is the incident as it stood when asked for
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


def test_release_frees_a_unit_that_was_assigned_a_second_time() -> None:
    field = Field()
    incident = responding(field)
    assert incident.release_unit("P-7", field.cause("resources"), field.now())
    assert assign(incident, field, "P-7")
    assert assign(incident, field, "P-7") is False  # a repeat of the second assignment

    for step in (incident.contain, incident.start_recovery, incident.complete_recovery):
        step(field.cause(), field.now())
    release_and_close(incident, field.cause(), field.now())
    assert incident.state.deployed_units() == []


# ---- the lifecycle ----


def test_the_whole_lifecycle_in_order() -> None:
    field = Field()
    incident = responding(field)
    for step, state in ((Incident.contain, S.INCIDENT_STATE_CONTAINED),
                        (Incident.start_recovery, S.INCIDENT_STATE_RECOVERING),
                        (Incident.complete_recovery, S.INCIDENT_STATE_RECOVERED),
                        (release_and_close, S.INCIDENT_STATE_CLOSED)):
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
    "close": lambda i, f: release_and_close(i, f.cause(), f.now()),
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


@pytest.mark.parametrize(("state", "step"), [(s, t) for s in PATHS for t in sorted(ALLOWED[s])])
def test_each_allowed_step_is_accepted(state: str, step: str) -> None:
    field = Field()
    incident = open_incident(field)
    for name in PATHS[state]:
        STEPS[name](incident, field)
    STEPS[step](incident, field)


def test_close_is_refused_until_every_deployed_unit_is_released() -> None:
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
    with pytest.raises(RuleViolation, match="close-without-deployed-units"):
        incident.close(field.cause(), field.now())
    assert incident.collect_events() == []  # nothing written by the refusal
    release_and_close(incident, field.cause(), field.now())

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
                     response_for("urban_flooding", pb.GRADE_III), cause("duty-officer"),
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
    release_and_close(incident, cause("duty-officer"), now())
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
        "opened", "warning_level_changed", "declared", "commander_assigned", "resources_requested",
        "unit_assigned", "unit_assigned", "resource_shortfall", "unit_status_reported",
        "unit_status_reported", "unit_status_reported", "contained", "warning_cleared",
        "recovery_started", "recovered", "unit_released", "unit_released", "closed"]

    # Which command (by index into causes/nows) recorded each event: declare records three,
    # release-and-close three.
    command_of = [0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 13, 13]
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
    assert len(history) == 5

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
    for later in history[2:]:
        state.apply(later)
    assert state.view == incident.view


def test_a_history_written_by_a_newer_version_still_replays() -> None:
    field = Field()
    incident = open_incident(field)
    declare(incident, field)
    # As canonical JSON (rows stored before events were binary; binary rows have a test of
    # their own in test_stored_encoding.py). A newer writer added fields this reader does
    # not know.
    payloads = [to_json(e.payload) for e in incident.collect_events()]  # type: ignore[attr-defined]
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
#: "operator" declares, so is the first commander; "commander" means whoever commands now.
ACTORS = ["commander", "operator", "officer-a", "officer-b"]
CONTAINED_OR_LATER = (S.INCIDENT_STATE_CONTAINED, S.INCIDENT_STATE_RECOVERING,
                      S.INCIDENT_STATE_RECOVERED, S.INCIDENT_STATE_CLOSED)
UNFINISHED = (pb.ORDER_STATUS_ISSUED, pb.ORDER_STATUS_ACKNOWLEDGED,
              pb.ORDER_STATUS_IN_PROGRESS)
FINISHED_ORDER = (pb.ORDER_STATUS_VERIFIED, pb.ORDER_STATUS_CANCELLED)
#: A small plan: each grade gives its orders and those of every less severe grade.
LADDER = [
    (pb.GRADE_IV, PlanOrder("keep-watch", "police", pb.ORDER_TIER_COMMUNITY, "Keep watch",
                            False, 10, 60)),
    (pb.GRADE_III, PlanOrder("evacuate", "fire", pb.ORDER_TIER_DISTRICT, "Evacuate the block",
                             True, 5, 45)),
    (pb.GRADE_II, PlanOrder("rescue", "fire", pb.ORDER_TIER_CITY, "Rescue the trapped", True,
                            3, 30)),
    (pb.GRADE_I, PlanOrder("shelter", "civil_affairs", pb.ORDER_TIER_CITY, "Shelter residents",
                           False, 15, 120)),
]


#: Materials per grade: a more severe grade needs at least as much of each.
MATERIALS = {pb.GRADE_IV: {"sandbags": 200}, pb.GRADE_III: {"sandbags": 500, "pumps": 2},
             pb.GRADE_II: {"sandbags": 2000, "pumps": 6}, pb.GRADE_I: {"sandbags": 10000,
                                                                       "pumps": 20}}


def planned(hazard: str, grade: int) -> Response:
    """The fixture's units for the hazard and grade, with a plan, its orders and
    materials."""
    return replace(response_for(hazard, grade), plan_id=f"{hazard}_plan", plan_version=2,
                   content_hash=hazard.ljust(64, "0")[:64], response_time_target_minutes=15,
                   notify=("fire", "police"),
                   orders=[o for at, o in LADDER if at >= grade],
                   materials=[pb.Material(name=name, quantity=quantity, unit="unit")
                              for name, quantity in MATERIALS[grade].items()])  # type: ignore[index]


actors = st.sampled_from([ACTORS[0], *ACTORS])  # the commander more often
declares = st.tuples(st.just("declare"), st.sampled_from(HAZARDS), st.sampled_from(GRADES))
steps = st.tuples(st.sampled_from(["contain", "start_recovery", "complete_recovery", "close"]))
assigns = st.tuples(st.just("assign"), st.sampled_from(UNIT_IDS),
                    st.floats(0, 50, allow_nan=False))
statuses = st.tuples(st.just("status"), st.sampled_from(UNIT_IDS),
                     st.sampled_from(UNIT_STATUSES))
# "advance" is the next step of the usual path from whatever state the incident is in
# (including the order, unit and task chores that gate it), so that many examples get past
# declaration, through recovery, to closing and review; every other command is drawn
# regardless of the state.
advances = st.tuples(st.just("advance"), st.sampled_from(HAZARDS), st.sampled_from(GRADES))
order_steps = st.tuples(st.just("order_step"),
                        st.sampled_from(["ack", "progress", "complete", "verify", "cancel"]),
                        st.integers(0, 7), actors, st.booleans())
# The unit: 0 for none, else the n-th unit deployed now (or one never deployed if none is).
issues = st.tuples(st.just("issue"), st.sampled_from(["commander"] * 3 + ["officer-a"]),
                   st.integers(0, 4), st.booleans(), st.integers(1, 20), st.integers(1, 90))
others = st.one_of(
    declares, steps, steps, steps, assigns, assigns, statuses, issues, issues, issues,
    order_steps, order_steps,
    st.tuples(st.just("release"), st.sampled_from(UNIT_IDS)),
    st.tuples(st.just("release_units"), st.lists(st.sampled_from(UNIT_IDS), max_size=2)),
    st.tuples(st.just("shortfall"), st.sampled_from(["ambulance", "pump_truck"]),
              st.integers(1, 3)),
    # Resources' answers and depot reports about materials, whatever the state.
    st.tuples(st.just("material"), st.sampled_from(["reserved", "shortfall", "consumed",
                                                    "returned"]),
              st.sampled_from(["sandbags", "pumps"]), st.integers(1, 300)),
    st.tuples(st.just("warning_level"), st.sampled_from(LEVELS)),
    st.tuples(st.just("clear_warning")),
    st.tuples(st.just("regrade"), st.sampled_from(GRADES), st.booleans()),
    st.tuples(st.just("hand_over"), actors, st.sampled_from(ACTORS[1:])),
    st.tuples(st.just("overdue")), st.tuples(st.just("overdue")),
    st.tuples(st.just("situation"), st.integers(0, 50), st.integers(0, 500)),
    st.tuples(st.just("add_task"), st.sampled_from(list(pb.RecoveryTaskKind.values())[1:])),
    st.tuples(st.just("add_task"), st.sampled_from(list(pb.RecoveryTaskKind.values())[1:])),
    st.tuples(st.just("complete_task"), st.integers(0, 3)),
    st.tuples(st.just("reviewed")),
)
#: About one command in three moves the incident on.
commands = st.lists(st.one_of(advances, others, others), min_size=20, max_size=50)


NEXT = {S.INCIDENT_STATE_WARNING: "declare", S.INCIDENT_STATE_DECLARED: "contain",
        S.INCIDENT_STATE_RESPONDING: "contain", S.INCIDENT_STATE_CONTAINED: "start_recovery",
        S.INCIDENT_STATE_RECOVERING: "complete_recovery",
        S.INCIDENT_STATE_RECOVERED: "close", S.INCIDENT_STATE_CLOSED: "reviewed",
        S.INCIDENT_STATE_DISMISSED: "reviewed"}


def rank(state: int) -> int:
    return ORDER.index(state)


def next_chore(incident: Incident) -> tuple[Any, ...] | None:
    """What must happen before the next lifecycle step can: (command, *args) or None."""
    v = incident.view
    if v.state == S.INCIDENT_STATE_DECLARED:
        return ("assign", UNIT_IDS[0], 1.0)  # resources answer the request
    if v.state == S.INCIDENT_STATE_RESPONDING:
        pending = [o for o in v.orders if o.life_safety and o.status in UNFINISHED]
    elif v.state == S.INCIDENT_STATE_CONTAINED:
        # Recovery plans at least the removal of the hazard (隐患整改).
        return None if v.recovery_tasks else (
            "add_task", pb.RECOVERY_TASK_KIND_HAZARD_RECTIFICATION)
    elif v.state == S.INCIDENT_STATE_RECOVERING:
        task = next((t for t in v.recovery_tasks if not t.done), None)
        return None if task is None else ("complete_task_id", task.id)
    elif v.state == S.INCIDENT_STATE_RECOVERED:
        if incident.state.deployed_units():
            return ("release_units", [])
        pending = incident.state.open_orders()
    else:
        return None
    if not pending:
        return None
    o = pending[0]
    step = {pb.ORDER_STATUS_ISSUED: "ack", pb.ORDER_STATUS_COMPLETED: "verify"}.get(
        o.status, "complete")
    return ("order_step_id", step, o.id, "commander", True)


class Drive:
    """Runs commands on one incident, checking after every command that was accepted that
    no rule is broken and that the recorded history replays to the aggregate's view."""

    def __init__(self) -> None:
        self.field = Field()
        self.incident = open_incident(self.field)
        self.history = wrappers(self.incident)
        self.replayed = IncidentState.replay(self.history)  # review's fold, kept up to date
        self.ever_declared = False
        self.overdue_seen: set[tuple[str, int]] = set()
        self.commanders: list[str] = []  # every commander in turn

    def advance(self, hazard: str, grade: int, wait: int, chores: int = 1) -> None:
        """Up to `chores` of the chores that gate the next lifecycle step (each its own
        command), then that step if nothing gates it any more."""
        for _ in range(chores):
            chore = next_chore(self.incident)
            if chore is None:
                break
            self.run(chore[0], list(chore[1:]), wait)
            wait = 0
        if next_chore(self.incident) is None:
            step = NEXT[self.incident.view.state]
            self.run(step, [hazard, grade] if step == "declare" else [], wait)

    def play(self, commands: list[tuple[Any, ...]], minutes: list[int], every: int,
             chores: int, hazard: str, grade: int, dismiss_at: int | None = None) -> None:
        """The drawn commands, with the incident moved on every `every` of them (doing up
        to `chores` chores at a time), and dismissal tried before command `dismiss_at`."""
        for n, ((name, *args), wait) in enumerate(zip(commands, minutes, strict=False)):
            if n == dismiss_at:
                self.run("dismiss", [], 0)
            if n % every == every - 1:
                self.advance(hazard, grade, 0, chores)
            if name == "advance":
                self.advance(args[0], args[1], wait, chores)
            else:
                self.run(name, args, wait)

    def run(self, name: str, args: list[Any], wait: int) -> None:
        field, incident = self.field, self.incident
        field.advance(minutes=wait)
        now = field.now()
        before = pb.Incident()
        before.CopyFrom(incident.view)

        def cause(actor: str = "operator", reason: str = "") -> Cause:
            if actor == "commander":
                actor = before.commander or "operator"
            return field.cause(actor, reason=reason)

        def pick(items: Any, index: int, missing: str) -> str:
            return str(items[index % len(items)].id) if items else missing

        try:
            if name == "declare":
                hazard, grade = args
                incident.declare(pb.CATEGORY_NATURAL_DISASTER, hazard, grade,
                                 planned(hazard, grade), cause(), now)
            elif name == "assign":
                unit_id, distance = args
                incident.assign_unit("req", unit_id, "pump_truck", distance, cause(), now)
            elif name == "status":
                incident.report_unit_status(args[0], args[1], cause(), now)
            elif name == "release":
                incident.release_unit(args[0], cause("resources"), now)
            elif name == "release_units":
                incident.release_units(args[0], cause(), now)
            elif name == "shortfall":
                incident.record_shortfall("req", args[0], args[1], cause(), now)
            elif name == "material":
                what, material, quantity = args
                m = pb.Material(name=material, quantity=quantity, unit="unit")
                if what == "reserved":
                    incident.reserve_material("req", "D-1", m, 1.5, cause("dispatch"), now)
                elif what == "shortfall":
                    incident.record_material_shortfall("req", m, cause("dispatch"), now)
                else:
                    incident.record_material_use("D-1", m, what == "consumed",
                                                 cause("dispatch"), now)
            elif name == "warning_level":
                incident.change_warning_level(args[0], cause(), now)
            elif name == "clear_warning":
                incident.clear_warning(cause(), now)
            elif name == "regrade":
                grade, with_reason = args
                incident.regrade(grade, planned(before.hazard_type or "urban_flooding", grade),
                                 cause("commander", "conditions changed" if with_reason else ""),
                                 now)
            elif name == "hand_over":
                incident.hand_over(args[1], cause(args[0]), now)
            elif name == "issue":
                actor, unit, life_safety, ack, complete = args
                deployed = [u.unit_id for u in incident.state.deployed_units()]
                unit_id = "" if not unit else (
                    deployed[unit % len(deployed)] if deployed else "X-9")
                incident.issue_order("fire", unit_id, pb.ORDER_TIER_DISTRICT, "Hold the line",
                                     life_safety, ack, ack + complete, cause(actor), now)
            elif name in ("order_step", "order_step_id"):
                step, which, actor, with_reason = args
                target = which if name == "order_step_id" else pick(before.orders, which,
                                                                     "O-99")
                by = cause(actor, "no longer needed" if with_reason else "")
                if step == "progress":
                    incident.report_order_progress(target, "under way", 50, by, now)
                else:
                    {"ack": incident.acknowledge_order, "complete": incident.complete_order,
                     "verify": incident.verify_order,
                     "cancel": incident.cancel_order}[step](target, by, now)
            elif name == "overdue":
                incident.record_overdue(field.clock.now(), now)
            elif name == "situation":
                incident.report_situation(pb.SituationReported(
                    injured=args[0], evacuated=args[1], text="update"), cause(), now)
            elif name == "add_task":
                incident.add_recovery_task(args[0], "utilities", "restore", cause(), now)
            elif name in ("complete_task", "complete_task_id"):
                task_id = args[0] if name == "complete_task_id" else pick(
                    before.recovery_tasks, args[0], "T-99")
                incident.complete_recovery_task(task_id, cause(), now)
            elif name == "reviewed":
                incident.mark_reviewed("reviewed", cause("reviewer"), now)
            else:
                getattr(incident, name)(cause(), now)
        except (RuleViolation, InvalidArgument, NotFound):
            # A refused command records nothing and changes nothing.
            assert incident.collect_events() == []
            assert incident.view == before
            return
        new = wrappers(incident)
        self.history += new
        event(name.removesuffix("_id"))
        self.check(before, new)

    def check(self, before: pb.Incident, new: list[pb.IncidentEvent]) -> None:
        incident, v = self.incident, self.incident.view

        # The lifecycle never goes backwards, but for an escalation after containment,
        # which re-opens the response; dismissal only ever follows a warning.
        kinds = [event_of(w)[0] for w in new]
        if v.state == S.INCIDENT_STATE_DISMISSED:
            assert before.state in (S.INCIDENT_STATE_WARNING, S.INCIDENT_STATE_DISMISSED)
        elif "response_reopened" in kinds:
            assert kinds[kinds.index("response_reopened") - 1] == "grade_changed"
            reopened = new[kinds.index("response_reopened")].response_reopened
            assert reopened.from_state == before.state and before.state in AFTER_CONTAINMENT
            assert reopened.to_grade < reopened.from_grade == before.grade
            assert reopened.meta.reason
            assert v.state == S.INCIDENT_STATE_RESPONDING and not v.HasField("contained_at")
            event("response re-opened")
        else:
            assert before.state != S.INCIDENT_STATE_DISMISSED
            assert rank(v.state) >= rank(before.state)
        if before.state in AFTER_CONTAINMENT and v.grade < before.grade:
            assert "response_reopened" in kinds
        self.ever_declared = self.ever_declared or any(
            event_of(w)[0] == "declared" for w in new)
        if v.state == S.INCIDENT_STATE_DISMISSED:
            assert not self.ever_declared
            assert not v.HasField("declared_at")
        if v.state in (S.INCIDENT_STATE_WARNING, S.INCIDENT_STATE_DISMISSED):
            assert not v.units and not v.orders and not v.commander
        deployed = [u.unit_id for u in incident.state.deployed_units()]
        assert len(set(deployed)) == len(deployed)

        # Materials: a request asks for something; and once a plan is in force, what is
        # committed of each of its materials covers what its grade needs (escalation asks
        # for the difference, de-escalation keeps what came). Steps about materials are
        # taken only while the incident is active.
        for w in new:
            if event_of(w)[0] == "resources_requested":
                assert w.resources_requested.requirements or w.resources_requested.materials
                assert all(m.quantity > 0 for m in w.resources_requested.materials)
            if event_of(w)[0] == "plan_activated":
                for m in w.plan_activated.materials:
                    assert incident.state.committed_material(m.name) >= m.quantity
            if event_of(w)[0].startswith("material_"):
                assert before.state in ACTIVE

        # Closed: no unit deployed and every order verified or cancelled.
        if v.state == S.INCIDENT_STATE_CLOSED:
            assert deployed == []
            assert all(o.status in FINISHED_ORDER for o in v.orders)
        # Contained and after: no unfinished life-safety order.
        if v.state in CONTAINED_OR_LATER:
            assert not [o.id for o in v.orders if o.life_safety and o.status in UNFINISHED]
        # Recovered (and closed): every recovery task done.
        if v.state in (S.INCIDENT_STATE_RECOVERED, S.INCIDENT_STATE_CLOSED):
            assert all(t.done for t in v.recovery_tasks)
        # At most one unfinished order per unit.
        busy = [o.unit_id for o in v.orders if o.unit_id and o.status in UNFINISHED]
        assert len(busy) == len(set(busy))
        # Orders keep their ids and only move forward.
        assert [o.id for o in v.orders[:len(before.orders)]] == [o.id for o in before.orders]
        assert all(now.status >= then.status for now, then in zip(v.orders, before.orders,
                                                                   strict=False))

        # One commander at a time: the declaring officer, then only by handover from the
        # commander in office. Each deadline of each order is overdue at most once, at the
        # time it fell due, escalated to the commander in office then.
        for w in new:
            if event_of(w)[0] == "order_overdue":
                overdue = w.order_overdue
                key = (overdue.order_id, int(overdue.deadline))
                assert key not in self.overdue_seen
                self.overdue_seen.add(key)
                assert overdue.meta.occurred_at == overdue.due_at
                assert overdue.escalated_to == self.commanders[-1]
                o = incident.state.order(overdue.order_id)
                assert o is not None
                assert overdue.due_at == (o.acknowledge_by if overdue.deadline
                                          == pb.DEADLINE_ACKNOWLEDGEMENT else o.complete_by)
            if event_of(w)[0] == "commander_assigned":
                assigned = w.commander_assigned
                previous = self.commanders[-1] if self.commanders else ""
                assert assigned.previous_commander == previous
                if previous:
                    assert assigned.meta.actor == previous
                assert assigned.commander and assigned.commander != previous
                self.commanders.append(assigned.commander)
        assert v.commander == (self.commanders[-1] if self.commanders else "")
        assert bool(v.commander) == self.ever_declared

        assert all(len(set(o.overdue)) == len(o.overdue) for o in v.orders)
        # Field time never runs backwards, and no deadline passed before the last step is
        # left unrecorded (a late step records it first).
        times = [from_timestamp(meta_of(w).occurred_at)
                 for w in self.history[len(self.history) - len(new) - 1:]]
        assert times == sorted(times)
        assert due_deadlines(v, from_timestamp(v.updated_at)) == []
        # Reviewed only once the incident ended.
        if v.reviewed:
            assert v.state in (S.INCIDENT_STATE_CLOSED, S.INCIDENT_STATE_DISMISSED)

        # The recorded history is gap-free and replays to exactly this view.
        first = len(self.history) - len(new) + 1
        assert [meta_of(w).sequence for w in new] == list(range(first, len(self.history) + 1))
        assert all(meta_of(w).correlation_id == WARNING_ID for w in new)
        for w in new:
            self.replayed.apply(w)
        assert self.replayed.view == v


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=commands, minutes=st.lists(st.integers(0, 90), min_size=50, max_size=50),
       dismiss_at=st.sampled_from([None] * 8 + [0, 3]), every=st.integers(3, 20),
       chores=st.integers(1, 5), hazard=st.sampled_from(HAZARDS),
       grade=st.sampled_from(GRADES))
def test_any_command_sequence_keeps_the_lifecycle_rules(
        commands: list[tuple[Any, ...]], minutes: list[int], dismiss_at: int | None,
        every: int, chores: int, hazard: str, grade: int) -> None:
    """Besides the drawn commands, the incident moves on every `every` commands (doing up
    to `chores` chores at a time), so that examples get through the whole lifecycle;
    dismissal is tried at one point of some examples (drawn as often as the rest, it would
    end most of them at once)."""
    drive = Drive()
    drive.play(commands, minutes, every, chores, hazard, grade, dismiss_at)
    # The whole history replays from scratch to the aggregate's view, and every prefix of
    # it replays, each to its own version (a fold: replaying prefix n is its first n steps;
    # the prefixes that end a command were compared with the aggregate's view in check).
    assert IncidentState.replay(drive.history).view == drive.incident.view
    state = IncidentState()
    for n, w in enumerate(drive.history, start=1):
        state.apply(w)
        assert state.view.version == n
    event(f"ended {S.Name(drive.incident.view.state)}")
