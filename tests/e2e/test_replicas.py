"""Two replicas of every service: the leaders are killed mid-incident, the standbys take
over, and the incident's record ends as an undisturbed run's would: the demo's flood, and
the high-rise fire, whose order deadline passes after the takeover."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from lifeline.devstack import Stack
from lifeline.events import event_of, meta_of
from lifeline.scenario import SCENARIOS, Player, Scenario, Step, wait_until

from tests.conftest import StackFactory
from tests.e2e.test_failures import stream_counts


def play(stack: Stack, scenario: Path, after_step: object = None) -> Player:
    player = Player(stack.addresses(), stack, say=lambda _: None, timeout=60)
    player.play(Scenario.load(scenario), after_step=after_step)  # type: ignore[arg-type]
    return player


@pytest.mark.parametrize("scenario", ["underpass_flood", "high_rise_fire"])
def test_killing_every_leader_mid_incident_hands_over_without_loss_or_repeat(
        make_stack: StackFactory, scenario: str) -> None:
    path = SCENARIOS / f"{scenario}.toml"
    reference = play(make_stack(), path)
    expected = [event_of(e)[0] for e in reference.history()]
    reference.close()

    stack = make_stack(replicas=2)
    first = {name: stack.service(name) for name in Stack.SERVICES}
    killed: list[int] = []

    def kill_the_leaders(index: int, step: Step) -> None:
        # After the declaration: orders are out and their deadlines not yet passed.
        if step.do == "acknowledge" and not killed:
            for name in Stack.SERVICES:
                stack.service(name).kill9()
            killed.append(index)

    player = play(stack, path, kill_the_leaders)
    assert killed, "the scenario never reached the step to kill at"
    def taken_over(name: str) -> bool:
        leader = stack.service(name)
        return leader is not first[name] and leader.leads()

    for name in Stack.SERVICES:
        # A standby the rest of the scenario did not need may still be starting to serve.
        wait_until(lambda n=name: taken_over(n), f"a standby of {name} to take over")

    history = player.history()
    assert [event_of(e)[0] for e in history] == expected
    assert [meta_of(e).sequence for e in history] == list(range(1, len(history) + 1))
    overdue = Counter((e.order_overdue.order_id, e.order_overdue.deadline)
                      for e in history if event_of(e)[0] == "order_overdue")
    assert set(overdue.values()) <= {1}, f"a deadline escalated more than once: {overdue}"
    if scenario == "high_rise_fire":
        assert overdue, "the fire's order deadline must pass after the takeover"
    for name in ("LIFELINE_DISPATCH", "LIFELINE_RESOURCES", "LIFELINE_MONITOR"):
        repeated = {k: n for k, n in stream_counts(stack, name).items() if n > 1}
        assert not repeated, f"{name} holds events twice: {repeated}"
    player.close()
