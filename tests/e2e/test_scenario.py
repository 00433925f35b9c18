"""The demo scenario through the running services: every step in the replayed history, in
order, with the right phase durations in field time."""

from __future__ import annotations

from datetime import datetime, timedelta

from lifeline.devstack import Stack
from lifeline.events import event_of, from_timestamp, meta_of
from lifeline.review.v1 import review_pb2
from lifeline.scenario import SCENARIOS, Player, Scenario

FLOOD = SCENARIOS / "underpass_flood.toml"


def play(stack: Stack, scenario: Scenario) -> tuple[Player, str]:
    player = Player(stack.addresses(), stack, say=lambda _: None)
    return player, player.play(scenario)


def test_flood_is_replayed_step_by_step_with_field_times(stack: Stack) -> None:
    scenario = Scenario.load(FLOOD)
    player, incident_id = play(stack, scenario)
    steps = list(player.review.ReplayIncident(
        review_pb2.ReplayIncidentRequest(incident_id=incident_id)))
    kinds = [event_of(s.event)[0] for s in steps]

    # Every step of the story, in order.
    expected_order = ["opened", "declared", "resources_requested", "unit_assigned",
                      "unit_status_reported", "contained", "recovery_started", "recovered",
                      "unit_released", "closed"]
    positions = [kinds.index(k) for k in expected_order]
    assert positions == sorted(positions), kinds
    assert kinds.count("unit_assigned") == 4
    assert kinds.count("unit_released") == 4
    assert kinds[-1] == "closed"
    assert [meta_of(s.event).sequence for s in steps] == list(range(1, len(steps) + 1))
    states = [s.state.state for s in steps]
    assert states == sorted(states) or states[-1] > states[0]
    assert {u.unit_kind for u in steps[-1].state.units} == {
        "rescue_team", "pump_truck", "ambulance", "police_car"}

    # Field times, not the seconds the run took.
    start = scenario.start
    occurred = [from_timestamp(meta_of(s.event).occurred_at) for s in steps]
    assert occurred[0] == start + timedelta(minutes=25)  # rain crossed blue at 00:25
    assert occurred[-1] == start + timedelta(hours=6, minutes=30)
    recorded = [from_timestamp(meta_of(s.event).recorded_at) for s in steps]
    assert max(recorded) - min(recorded) < timedelta(minutes=5)  # the run itself: seconds

    evaluation = player.review.EvaluateIncident(
        review_pb2.EvaluateIncidentRequest(incident_id=incident_id)).evaluation

    def minutes(field: str) -> float:
        return float(getattr(evaluation, field).ToTimedelta().total_seconds() / 60)

    assert minutes("warning_to_declared") == 53  # 00:25 -> 01:18
    assert minutes("declared_to_first_assignment") == 0
    assert minutes("response_time") == 11  # police on scene at 01:29
    assert minutes("declared_to_contained") == 107  # 01:18 -> 03:05
    assert minutes("recovery_duration") == 175  # 03:20 -> 06:15
    assert minutes("total_duration") == 365  # 00:25 -> 06:30
    assert evaluation.units_assigned == 4 and evaluation.units_short == 0
    player.close()


def test_nearest_available_unit_goes_and_one_unit_never_serves_two(stack: Stack) -> None:
    """After the first flood closes its units serve the next; a flood in another cell while
    they are busy gets the remaining units of each kind, and a shortfall for the rest."""
    scenario = Scenario.load(FLOOD)
    first, _ = play(stack, scenario)
    second = Player(stack.addresses(), stack, tag="b", say=lambda _: None)
    second.setup(Scenario(scenario.name, scenario.start, scenario.sensors, [], []))
    when = datetime(2026, 8, 1, 9, 0)
    for step in scenario.steps[:5]:  # up to and including the declaration
        second.run_step(step, when + step.at)
    incident = second._incident()
    assert {u.unit_id for u in incident.units} == {
        "rescue-xh-1", "pump-xh-1", "amb-zs-6", "police-xh-11"}  # released by the first

    third = Player(stack.addresses(), stack, tag="c", say=lambda _: None)
    # Another grid cell, both sensors still in one (+0.03° would put them astride a border).
    elsewhere = [{**s, "lat": s["lat"] + 0.04} for s in scenario.sensors]
    third.setup(Scenario(scenario.name, scenario.start, elsewhere, [], []))
    for step in scenario.steps[:5]:
        third.run_step(step, when + step.at)
    taken = third._incident()
    # The nearest are busy with the second incident: the remaining unit of each kind goes,
    # and the kind with no unit left is recorded as short; no unit serves two incidents.
    assert {u.unit_id for u in taken.units} == {"rescue-cn-2", "pump-mh-3", "amb-rj-2"}
    assert [(s.unit_kind, s.count) for s in taken.shortfalls] == [("police_car", 1)]
    assert not {u.unit_id for u in taken.units} & {u.unit_id for u in second._incident().units}
    for player in (first, second, third):
        player.close()
