"""Field time runs forward on every aggregate, and deadlines are judged in field time.

A caller's step dated before the aggregate's last step is refused (`time-runs-forward`) and
writes nothing; a step caused by another service's event is never refused, it is clamped to
the last step's time. In production an incident's field clock runs on from its latest
reported step at the service clock's pace, so a history told in past field time is not
overdue at once. Pure domain tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import pytest
from lifeline.clock import FieldClock
from lifeline.common.v1 import common_pb2
from lifeline.errors import RuleViolation
from lifeline.events import Cause, event_of, from_timestamp, meta_of
from lifeline.incident.aggregate import Incident
from lifeline.incident.deadlines import due_deadlines, field_time_offset
from lifeline.incident.response import PlanOrder, Response
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.resources.v1 import resources_pb2
from lifeline_resources.domain import Unit
from lifeline_review.domain import evaluate

U = common_pb2.UnitStatus
PLACE = common_pb2.GeoPoint(lat=31.2304, lon=121.4737)
#: Field time: a fire two hours ago, as a call-taking system reports it after the fact.
FIELD = datetime(2026, 3, 14, 11, 40, tzinfo=UTC)
#: Service time: when dispatch records it.
SERVICE = FIELD + timedelta(hours=2)
COMMANDER = "officer-li"
RESPONSE = Response(
    units=[pb.UnitRequirement(unit_kind="fire_engine", count=1)],
    orders=[PlanOrder("fight-fire", "fire", pb.ORDER_TIER_DISTRICT, "Fight the fire", True,
                      5, 30)])


def at(minutes: float, actor: str = COMMANDER) -> Cause:
    return Cause(actor=actor, occurred_at=FIELD + timedelta(minutes=minutes))


def service(seconds: float = 0) -> datetime:
    return SERVICE + timedelta(seconds=seconds)


def history(incident: Incident) -> list[pb.IncidentEvent]:
    return [cast(pb.IncidentEvent, Incident.decode(cast(Any, e).payload))
            for e in incident.pending_events]


def declared(minutes: float = 10) -> Incident:
    """Reported at 11:40 field time, declared at 11:50, a fire engine assigned with it."""
    incident = Incident.report(uuid4(), "fire", PLACE, "smoke from the 12th floor",
                               "caller-110", "", at(0, "call-taker"), service())
    incident.declare(pb.CATEGORY_ACCIDENT_DISASTER, "high_rise_fire", pb.GRADE_III, RESPONSE,
                     at(minutes), service(1))
    assert incident.assign_unit("req-1", "E-1", "fire_engine", 1.2, at(minutes, "resources"),
                                service(2))
    return incident


def refused_as_backwards(incident: Incident, command: Callable[[], object]) -> str:
    """Refused naming the rule, recording and changing nothing."""
    pending = len(incident.pending_events)
    before = pb.Incident()
    before.CopyFrom(incident.view)
    with pytest.raises(RuleViolation) as error:
        command()
    assert error.value.rule == "time-runs-forward"
    assert len(incident.pending_events) == pending
    assert incident.view == before
    return str(error.value)


# ---- a caller's step is never dated before the incident's last step ----


def test_a_declaration_before_the_report_is_refused() -> None:
    incident = Incident.report(uuid4(), "fire", PLACE, "smoke", "caller-110", "",
                               at(0, "call-taker"), service())
    message = refused_as_backwards(incident, lambda: incident.declare(
        pb.CATEGORY_ACCIDENT_DISASTER, "high_rise_fire", pb.GRADE_III, RESPONSE,
        at(-120), service(1)))
    assert message == ("time-runs-forward: declared at 2026-03-14T09:40:00+00:00 is before "
                       "the incident's last step at 2026-03-14T11:40:00+00:00")


STEPS: dict[str, Callable[[Incident, Cause], object]] = {
    "regrade": lambda i, c: i.regrade(pb.GRADE_II, RESPONSE, Cause(
        c.actor, c.occurred_at, reason="spreading"), service(9)),
    "hand over": lambda i, c: i.hand_over("officer-wang", c, service(9)),
    "issue order": lambda i, c: i.issue_order("fire", "", pb.ORDER_TIER_DISTRICT, "Ventilate",
                                              False, 5, 30, c, service(9)),
    "acknowledge order": lambda i, c: i.acknowledge_order("O-1", Cause("fire", c.occurred_at),
                                                          service(9)),
    "cancel order": lambda i, c: i.cancel_order("O-1", Cause(c.actor, c.occurred_at,
                                                             reason="wrong"), service(9)),
    "situation": lambda i, c: i.report_situation(pb.SituationReported(injured=2), c,
                                                 service(9)),
    "release units": lambda i, c: i.release_units([], c, service(9)),
}


@pytest.mark.parametrize("step", STEPS)
def test_a_step_dated_before_the_last_one_is_refused_and_writes_nothing(step: str) -> None:
    incident = declared(minutes=10)
    refused_as_backwards(incident, lambda: STEPS[step](incident, at(9)))
    # The same step at the last step's own time, or later, is taken.
    STEPS[step](incident, at(10))


def test_a_unit_on_scene_before_it_was_assigned_never_shows_a_negative_response_time() -> None:
    """Resources' report is never refused: it is recorded at the incident's last step."""
    incident = declared(minutes=10)
    assert incident.report_unit_status("E-1", U.UNIT_STATUS_ON_SCENE, at(3, "resources"),
                                       service(3))
    on_scene = incident.view.units[0].on_scene_at
    assert from_timestamp(on_scene) == FIELD + timedelta(minutes=10)
    events = history(incident)
    assert evaluate(str(incident.id), events).response_time.ToTimedelta() == timedelta(0)


CONSUMED: dict[str, Callable[[Incident, Cause], object]] = {
    "unit assigned": lambda i, c: i.assign_unit("req-1", "E-2", "fire_engine", 2.0, c,
                                                service(9)),
    "shortfall": lambda i, c: i.record_shortfall("req-1", "ambulance", 1, c, service(9)),
    "unit status": lambda i, c: i.report_unit_status("E-1", U.UNIT_STATUS_EN_ROUTE, c,
                                                     service(9)),
    "unit released": lambda i, c: i.release_unit("E-1", c, service(9)),
    "warning level": lambda i, c: i.change_warning_level(common_pb2.WARNING_LEVEL_RED, c,
                                                         service(9)),
}


@pytest.mark.parametrize("step", CONSUMED)
def test_another_services_event_from_before_the_last_step_is_clamped_to_it(step: str) -> None:
    incident = declared(minutes=10)
    recorded = len(incident.pending_events)
    CONSUMED[step](incident, at(-30, "resources"))
    [event] = history(incident)[recorded:]
    assert from_timestamp(meta_of(event).occurred_at) == FIELD + timedelta(minutes=10)
    # One from after the last step keeps its own time.
    incident.hand_over("officer-wang", at(12), service(10))
    incident.record_shortfall("req-1", "police_car", 1, at(15, "resources"), service(11))
    assert from_timestamp(incident.view.updated_at) == FIELD + timedelta(minutes=15)


def test_the_history_of_an_incident_is_in_field_time_order() -> None:
    incident = declared(minutes=10)
    incident.report_unit_status("E-1", U.UNIT_STATUS_EN_ROUTE, at(1, "resources"), service(3))
    incident.acknowledge_order("O-1", at(20, "fire"), service(4))  # 15 minutes late
    times = [meta_of(e).occurred_at.ToDatetime() for e in history(incident)]
    assert times == sorted(times)
    replayed = IncidentState.replay(history(incident))
    assert replayed.view == incident.view


# ---- a unit's steps run forward too ----


def unit_serving(minutes: float) -> Unit:
    unit = Unit.register(resources_pb2.RegisterUnitRequest(
        id="E-1", kind="fire_engine", home=PLACE, department="fire"), at(-600, "admin"),
        service())
    unit.assign("incident-1", "req-1", at(minutes, "resources"), service(1))
    return unit


def test_a_unit_status_dated_before_its_last_step_is_refused() -> None:
    unit = unit_serving(10)
    pending = len(unit.pending_events)
    with pytest.raises(RuleViolation) as error:
        unit.change_status(U.UNIT_STATUS_ON_SCENE, at(5, "crew-E-1"), service(2))
    assert error.value.rule == "time-runs-forward"
    assert str(error.value) == ("time-runs-forward: on_scene at 2026-03-14T11:45:00+00:00 is "
                                "before unit E-1's last step at 2026-03-14T11:50:00+00:00")
    assert len(unit.pending_events) == pending
    assert unit.view.status == U.UNIT_STATUS_ASSIGNED
    unit.change_status(U.UNIT_STATUS_ON_SCENE, at(10, "crew-E-1"), service(2))
    assert unit.view.status == U.UNIT_STATUS_ON_SCENE


def test_a_unit_registered_today_serves_an_incident_told_in_past_field_time() -> None:
    """Registration is the fleet office's, at service time: not a step in the field."""
    unit = Unit.register(resources_pb2.RegisterUnitRequest(
        id="E-1", kind="fire_engine", home=PLACE, department="fire"),
        Cause("fleet-office", SERVICE), service())
    unit.assign("incident-1", "req-1", at(10, "resources"), service(1))
    unit.change_status(U.UNIT_STATUS_EN_ROUTE, at(11, "crew-E-1"), service(2))
    assert from_timestamp(unit.view.status_since) == FIELD + timedelta(minutes=11)


def test_dispatchs_assignment_and_release_from_before_the_last_step_are_clamped() -> None:
    unit = unit_serving(10)
    unit.change_status(U.UNIT_STATUS_ON_SCENE, at(20, "crew-E-1"), service(2))
    assert unit.release("incident-1", at(15, "resources"), service(3))
    assert from_timestamp(unit.view.status_since) == FIELD + timedelta(minutes=20)
    unit.assign("incident-2", "req-2", at(0, "resources"), service(4))
    assert from_timestamp(unit.view.status_since) == FIELD + timedelta(minutes=20)
    events = [Unit.decode(cast(Any, e).payload) for e in unit.pending_events]
    times = [meta_of(e).occurred_at.ToDatetime() for e in events]
    assert times == sorted(times)


# ---- deadlines are judged in field time, on the incident's own field clock ----


def test_the_field_clock_runs_on_from_the_last_step_at_the_service_clocks_pace() -> None:
    # Two hours behind the service clock at the last step, so still two hours behind.
    assert FieldClock().now(timedelta(hours=-2), service(30)) == FIELD + timedelta(seconds=30)
    drill = FieldClock(observed=True)
    assert drill.now(timedelta(hours=-2), service()) is None  # no command yet
    drill.observe(FIELD)
    drill.observe(FIELD - timedelta(minutes=1))  # never backwards
    assert drill.now(timedelta(0), service(30)) == FIELD


def test_an_incident_told_in_past_field_time_is_not_overdue_at_once() -> None:
    """Reported two hours after it happened: the order issued at 11:50 field time has until
    11:55 to be acknowledged, and that is five minutes of the service clock from now."""
    incident = declared(minutes=10)
    assert field_time_offset(incident.view) == timedelta(minutes=10) - timedelta(
        hours=2, seconds=2)
    clock = FieldClock()
    soon = clock.now(field_time_offset(incident.view), service(3))
    assert soon is not None and due_deadlines(incident.view, soon) == []
    incident.acknowledge_order("O-1", at(13, "fire"), service(180))  # met in field time
    assert incident.view.orders[0].overdue == []

    later = clock.now(field_time_offset(incident.view), service(180 + 28 * 60))
    assert later is not None
    assert incident.record_overdue(later, service(180 + 28 * 60)) == 1  # completion at 12:20
    [overdue] = [e for e in history(incident) if event_of(e)[0] == "order_overdue"]
    assert overdue.order_overdue.deadline == pb.DEADLINE_COMPLETION
    assert from_timestamp(meta_of(overdue).occurred_at) == FIELD + timedelta(minutes=40)


def test_the_watchs_own_steps_do_not_move_the_field_clock() -> None:
    incident = declared(minutes=10)
    offset = field_time_offset(incident.view)
    clock = FieldClock()
    late = clock.now(offset, service(60 * 60))
    assert late is not None
    incident.record_overdue(late, service(60 * 60))
    assert field_time_offset(incident.view) == offset
