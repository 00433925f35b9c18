"""Dispatch's deadline clock as production runs it (no `LIFELINE_FIELD_CLOCK`): a history told
in past field time, played in seconds, is judged in field time like the drill, not marked
overdue at once against the service clock."""

from __future__ import annotations

from lifeline.events import event_of, meta_of
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.scenario import SCENARIOS, Player, Scenario

from tests.conftest import StackFactory

FIRE = SCENARIOS / "high_rise_fire.toml"


def test_a_fire_told_in_past_field_time_is_overdue_only_where_it_was_late(
        make_stack: StackFactory) -> None:
    stack = make_stack({"LIFELINE_FIELD_CLOCK": ""})  # the production clock
    player = Player(stack.addresses(), stack, say=lambda _: None)
    player.play(Scenario.load(FIRE))
    history = player.history()

    # Only utilities' acknowledgement was late in field time (due 00:13, none by 00:15);
    # every other deadline was met in field time, months before the service clock's now.
    overdue = [e for e in history if event_of(e)[0] == "order_overdue"]
    assert len(overdue) == 1
    late = overdue[0].order_overdue
    assert late.deadline == pb.DEADLINE_ACKNOWLEDGEMENT
    assert meta_of(overdue[0]).occurred_at == late.due_at
    final = player._incident()
    assert next(o for o in final.orders if o.id == late.order_id).department == "utilities"
    assert final.state == pb.INCIDENT_STATE_CLOSED
    times = [meta_of(e).occurred_at.ToDatetime() for e in history]
    assert times == sorted(times)  # field time never ran backwards
    player.close()
