"""Review's domain: the kept history of an incident and the phase durations it measures,
in field time, from a history dispatch's Incident aggregate recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, meta_of
from lifeline.incident.aggregate import Incident
from lifeline.incident.v1 import incident_pb2 as ipb
from lifeline_review.domain import IncidentHistory, evaluate

from tests.unit.fixtures import response_for

S = ipb.IncidentState
U = common_pb2.UnitStatus
WARNING_ID = "3123_12147/urban_flooding/1"
START = datetime(2024, 7, 1, 22, 0, tzinfo=UTC)
WALL = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)
PHASES = ("warning_to_declared", "declared_to_first_assignment", "response_time",
          "declared_to_contained", "recovery_duration", "total_duration")


class Drill:
    """An incident played on the simulation clock, keeping the field time of each step."""

    def __init__(self) -> None:
        self.clock = SimulationClock(START)
        self.at: dict[str, datetime] = {}
        self.incident = Incident.open_for_warning(
            WARNING_ID, "urban_flooding", common_pb2.WARNING_LEVEL_ORANGE,
            common_pb2.GeoPoint(lat=31.2317, lon=121.4733), "3123_12147",
            self.cause("dispatch", WARNING_ID), WALL)
        self.at["opened"] = START

    def cause(self, actor: str = "duty-officer", correlation: str = "") -> Cause:
        return Cause(actor=actor, occurred_at=self.clock.now(), correlation_id=correlation)

    def after(self, name: str, **delta: float) -> datetime:
        self.at[name] = self.clock.advance(timedelta(**delta))
        return self.at[name]

    def declare(self) -> None:
        self.incident.declare(ipb.CATEGORY_NATURAL_DISASTER, "urban_flooding", ipb.GRADE_III,
                              response_for("urban_flooding", ipb.GRADE_III), self.cause(),
                              WALL)

    def assign(self, unit_id: str, kind: str = "pump_truck") -> None:
        assert self.incident.assign_unit("req-1", unit_id, kind, 3.0, self.cause("resources"),
                                         WALL)

    def status(self, unit_id: str, status: int) -> None:
        assert self.incident.report_unit_status(unit_id, status, self.cause(unit_id), WALL)

    def history(self) -> list[ipb.IncidentEvent]:
        return [Incident.decode(e.payload)
                for e in self.incident.collect_events()]


def six_hours() -> Drill:
    """Warning at 22:00; declared 22:18; units from 22:21; first on scene 22:41 (the second
    unit assigned arrives first); contained 01:10; recovering 01:40-03:25; closed 04:00."""
    d = Drill()
    d.after("declared", minutes=18)
    d.declare()
    d.after("first_assigned", minutes=3)
    d.assign("P-7")
    d.after("second_assigned", minutes=4)
    d.assign("A-1", "ambulance")
    d.incident.record_shortfall("req-1", "rescue_team", 2, d.cause("resources"), WALL)
    d.after("P-7 en route", minutes=2)
    d.status("P-7", U.UNIT_STATUS_EN_ROUTE)
    d.after("A-1 on scene", minutes=14)
    d.status("A-1", U.UNIT_STATUS_ON_SCENE)
    d.after("P-7 on scene", minutes=6)
    d.status("P-7", U.UNIT_STATUS_ON_SCENE)
    d.after("contained", hours=2, minutes=23)
    d.incident.contain(d.cause(), WALL)
    d.after("recovery_started", minutes=30)
    d.incident.start_recovery(d.cause(), WALL)
    d.after("recovered", hours=1, minutes=45)
    d.incident.complete_recovery(d.cause(), WALL)
    d.after("closed", minutes=35)
    d.incident.release_units([], d.cause(), WALL)
    d.incident.close(d.cause(), WALL)
    return d


def test_every_phase_is_the_field_time_between_its_events() -> None:
    d = six_hours()
    history = d.history()
    at = d.at

    e = evaluate(str(d.incident.id), history)

    assert e.incident_id == str(d.incident.id)
    assert e.final_state == S.INCIDENT_STATE_CLOSED
    assert e.events == len(history)
    assert e.units_assigned == 2
    assert e.units_short == 2
    assert e.warning_to_declared.ToTimedelta() == at["declared"] - at["opened"] \
        == timedelta(minutes=18)
    assert e.declared_to_first_assignment.ToTimedelta() == at["first_assigned"] - at["declared"]
    assert e.declared_to_first_assignment.ToTimedelta() == timedelta(minutes=3)
    # The first unit on scene was the second one assigned.
    assert e.response_time.ToTimedelta() == at["A-1 on scene"] - at["declared"] \
        == timedelta(minutes=23)
    assert e.declared_to_contained.ToTimedelta() == at["contained"] - at["declared"] \
        == timedelta(hours=2, minutes=52)
    assert e.recovery_duration.ToTimedelta() == at["recovered"] - at["recovery_started"] \
        == timedelta(hours=1, minutes=45)
    assert e.total_duration.ToTimedelta() == at["closed"] - at["opened"] == timedelta(hours=6)


def test_the_evaluation_ignores_the_wall_clock_of_recording() -> None:
    """Every event was recorded at the same wall-clock instant: only field time counts."""
    d = six_hours()
    history = d.history()
    assert {meta_of(w).recorded_at.seconds for w in history} == {int(WALL.timestamp())}
    assert evaluate("x", history).total_duration.ToTimedelta() == timedelta(hours=6)


def test_phases_not_reached_are_left_unset() -> None:
    d = Drill()
    d.after("declared", minutes=10)
    d.declare()
    d.after("assigned", minutes=5)
    d.assign("P-7")
    d.after("en route", minutes=5)
    d.status("P-7", U.UNIT_STATUS_EN_ROUTE)  # not yet on scene

    e = evaluate(str(d.incident.id), d.history())

    assert e.final_state == S.INCIDENT_STATE_RESPONDING
    assert e.HasField("warning_to_declared")
    assert e.warning_to_declared.ToTimedelta() == timedelta(minutes=10)
    assert e.HasField("declared_to_first_assignment")
    assert e.declared_to_first_assignment.ToTimedelta() == timedelta(minutes=5)
    for phase in ("response_time", "declared_to_contained", "recovery_duration",
                  "total_duration"):
        assert not e.HasField(phase), phase


def test_after_a_flare_up_containment_and_recovery_are_those_that_held() -> None:
    """Contained at 00:40, re-opened by an escalation at 01:00 while recovering, contained
    again at 01:30: declared -> contained runs to 01:30, recovery from its second start."""
    d = Drill()
    d.declare()
    d.assign("P-7")
    d.after("first containment", minutes=40)
    d.incident.contain(d.cause(), WALL)
    d.incident.start_recovery(d.cause(), WALL)
    d.after("flare-up", minutes=20)
    d.incident.regrade(ipb.GRADE_II, response_for("urban_flooding", ipb.GRADE_II),
                       Cause("duty-officer", d.clock.now(), reason="levee breached"), WALL)
    d.after("contained", minutes=30)
    d.incident.contain(d.cause(), WALL)
    d.after("recovery_started", minutes=10)
    d.incident.start_recovery(d.cause(), WALL)
    d.after("recovered", minutes=50)
    d.incident.complete_recovery(d.cause(), WALL)

    e = evaluate(str(d.incident.id), d.history())

    assert e.final_state == S.INCIDENT_STATE_RECOVERED
    assert e.declared_to_contained.ToTimedelta() == timedelta(minutes=90)
    assert e.recovery_duration.ToTimedelta() == timedelta(minutes=50)


def test_a_warning_not_yet_acted_on_has_no_phases() -> None:
    d = Drill()
    e = evaluate(str(d.incident.id), d.history())
    assert e.final_state == S.INCIDENT_STATE_WARNING
    assert e.events == 1
    assert [p for p in PHASES if e.HasField(p)] == []


def test_a_dismissed_false_alarm_lasts_from_warning_to_dismissal() -> None:
    d = Drill()
    d.after("dismissed", minutes=25)
    d.incident.dismiss(d.cause(), WALL)

    e = evaluate(str(d.incident.id), d.history())

    assert e.final_state == S.INCIDENT_STATE_DISMISSED
    assert [p for p in PHASES if e.HasField(p)] == ["total_duration"]
    assert e.total_duration.ToTimedelta() == timedelta(minutes=25)


def test_a_phase_of_zero_length_is_still_measured() -> None:
    d = Drill()
    d.declare()  # at once, at the warning's own field time
    e = evaluate(str(d.incident.id), d.history())
    assert e.final_state == S.INCIDENT_STATE_DECLARED
    assert e.warning_to_declared.ToTimedelta() == timedelta(0)


# ---- the kept history ----


def keep(history: list[ipb.IncidentEvent]) -> IncidentHistory:
    cause = Cause(actor="review", occurred_at=START)
    kept = IncidentHistory.begin(history[0], cause, WALL)
    for event in history[1:]:
        assert kept.append(event, cause, WALL)
    return kept


def test_a_kept_history_is_the_incident_as_dispatch_recorded_it() -> None:
    d = six_hours()
    history = d.history()

    kept = keep(history)

    assert kept.id == d.incident.id
    assert kept.events == history
    assert kept.state.view == d.incident.view
    assert evaluate(str(kept.id), kept.events) == evaluate(str(d.incident.id), history)
    # Review's own stored events carry the incident events unchanged.
    stored = [IncidentHistory.decode(e.payload).recorded.event
              for e in kept.collect_events()]
    assert stored == history


def test_a_redelivered_event_is_ignored() -> None:
    d = six_hours()
    history = d.history()
    kept = keep(history[:5])
    kept.collect_events()
    cause = Cause(actor="review", occurred_at=START)

    for old in (history[0], history[2], history[4]):
        assert kept.append(old, cause, WALL) is False
    assert kept.collect_events() == []
    assert kept.events == history[:5]
    assert kept.state.view.version == 5

    assert kept.append(history[5], cause, WALL) is True
    assert kept.events == history[:6]


def test_a_history_must_start_at_the_first_event() -> None:
    history = six_hours().history()
    with pytest.raises(ValueError, match="must start at event 1"):
        IncidentHistory.begin(history[1], Cause(actor="review", occurred_at=START), WALL)


def test_a_history_with_a_gap_is_refused() -> None:
    history = six_hours().history()
    kept = keep(history[:3])
    kept.collect_events()

    with pytest.raises(ValueError, match="gap"):
        kept.append(history[4], Cause(actor="review", occurred_at=START), WALL)

    assert kept.collect_events() == []
    assert kept.events == history[:3]
    assert kept.append(history[3], Cause(actor="review", occurred_at=START), WALL)
