"""The complete incident lifecycle through the running services: a high-rise fire declared
grade III and escalated to II, an overdue order escalated once, command handed over, a
contradictory order refused, recovery tasks done, closure; then the exported history,
imported into a fresh review, replays to the same final state."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from lifeline.devstack import Stack
from lifeline.events import event_of, meta_of
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.plans import default_library
from lifeline.review.v1 import review_pb2
from lifeline.scenario import SCENARIOS, Player, Scenario

from tests.conftest import StackFactory

FIRE = SCENARIOS / "high_rise_fire.toml"
BIN = Path(sys.executable).parent


def review_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    # The stack's state directory holds the CA and a token with the evaluator role.
    env = {**os.environ, "LIFELINE_STATE_DIR": str(stack.state_dir)}
    return subprocess.run([str(BIN / "lifeline-review"), "--addr", stack.address("review"),
                           *args], capture_output=True, text=True, timeout=60, env=env)


def test_high_rise_fire_grade_ii_from_report_to_reviewed_replay(make_stack: StackFactory,
                                                                 tmp_path: Path) -> None:
    stack = make_stack()
    said: list[str] = []
    player = Player(stack.addresses(), stack, say=said.append)
    incident_id = player.play(Scenario.load(FIRE))
    history = player.history()
    kinds = [event_of(e)[0] for e in history]
    final = player._incident()

    # Escalation III -> II: the higher grade's plan in force, and only what it adds.
    plan = default_library().plan_for("high_rise_fire")
    assert plan is not None
    activations = [e.plan_activated for e in history if event_of(e)[0] == "plan_activated"]
    assert [(a.grade, a.plan_id, a.plan_version, a.content_hash) for a in activations] == [
        (pb.GRADE_III, plan.id, plan.version, plan.content_hash),
        (pb.GRADE_II, plan.id, plan.version, plan.content_hash)]
    requests = [e.resources_requested for e in history if event_of(e)[0] == "resources_requested"]
    assert len(requests) == 2
    grade_ii = dict(plan.for_grade(pb.GRADE_II).units)
    grade_iii = dict(plan.for_grade(pb.GRADE_III).units)
    assert {r.unit_kind: r.count for r in requests[1].requirements} == {
        kind: n - grade_iii.get(kind, 0) for kind, n in grade_ii.items()
        if n > grade_iii.get(kind, 0)}
    assigned = Counter(u.unit_kind for u in final.units)
    assert assigned == Counter(grade_ii)  # every unit grade II needs came
    plan_orders = [o.plan_order_id for o in final.orders if o.plan_order_id]
    assert sorted(plan_orders) == sorted(o.id for o in plan.for_grade(pb.GRADE_II).orders)
    assert final.grade == pb.GRADE_II

    # One order went overdue, recorded once, at its deadline, escalated to the commander.
    overdue = [e for e in history if event_of(e)[0] == "order_overdue"]
    assert len(overdue) == 1
    late = overdue[0].order_overdue
    assert late.deadline == pb.DEADLINE_ACKNOWLEDGEMENT
    assert late.escalated_to == "officer-li"
    assert meta_of(overdue[0]).occurred_at == late.due_at
    assert next(o for o in final.orders if o.id == late.order_id).department == "utilities"

    # Command was handed over; the old commander's order and a contradictory one refused.
    handovers = [e.commander_assigned for e in history
                 if event_of(e)[0] == "commander_assigned"]
    assert [(h.previous_commander, h.commander) for h in handovers] == [
        ("", "officer-li"), ("officer-li", "officer-zhang")]
    assert any("single-command" in line for line in said)
    assert any("no-contradictory-orders" in line for line in said)
    assert final.commander == "officer-zhang"
    zhang_orders = [o for o in final.orders if o.issued_by == "officer-zhang"]
    assert len(zhang_orders) == 1 and zhang_orders[0].unit_id.startswith("ladder-")

    # The loop closed: every order verified, every task done, every unit home, closed.
    assert all(o.status == pb.ORDER_STATUS_VERIFIED for o in final.orders)
    assert len(final.recovery_tasks) == 2 and all(t.done for t in final.recovery_tasks)
    assert all(u.released for u in final.units)
    assert final.situation.missing == 2 and final.situation.evacuated == 120
    assert kinds[-1] == "closed" and final.state == pb.INCIDENT_STATE_CLOSED

    evaluation = player.review.EvaluateIncident(
        review_pb2.EvaluateIncidentRequest(incident_id=incident_id)).evaluation
    assert evaluation.orders_overdue == 1
    assert evaluation.order_closure_rate == 1.0
    # Judged against the target of the grade in force at the end (II: the stricter one).
    assert evaluation.response_time_target_minutes == plan.for_grade(
        pb.GRADE_II).response_time_target_minutes
    assert evaluation.response_time.ToTimedelta().total_seconds() == 7 * 60  # 00:03 -> 00:10
    assert evaluation.response_time_met

    # Export, then import into a fresh review: the same history replays to the same state.
    exported = tmp_path / "fire.ndjson"
    out = review_cli(stack, "history", "export", incident_id, "-o", str(exported))
    assert out.returncode == 0, out.stderr
    assert len(exported.read_text().splitlines()) == len(history)
    player.close()

    fresh = make_stack()
    out = review_cli(fresh, "history", "import", str(exported))
    assert out.returncode == 0, out.stderr
    assert f"imported {len(history)} events of incident {incident_id}" in out.stdout
    # Kept apart, under an id of its own, and replayed and evaluated like the live one.
    imported_id = re.search(r" as ([0-9a-f-]{36})", out.stdout)[1]  # type: ignore[index]
    assert imported_id != incident_id
    other = Player(fresh.addresses(), fresh, say=lambda _: None)
    steps = list(other.review.ReplayIncident(
        review_pb2.ReplayIncidentRequest(incident_id=imported_id)))
    assert steps[-1].state == final
    again = other.review.EvaluateIncident(
        review_pb2.EvaluateIncidentRequest(incident_id=imported_id)).evaluation
    assert again.incident_id == imported_id
    again.incident_id = incident_id
    assert again == evaluation
    other.close()


def test_an_import_with_a_bad_event_is_refused_naming_its_line(stack: Stack,
                                                               tmp_path: Path) -> None:
    player = Player(stack.addresses(), stack, say=lambda _: None)
    scenario = Scenario.load(FIRE)
    player.play(Scenario(scenario.name, scenario.start, scenario.sensors, scenario.units,
                         scenario.steps[:2]))
    exported = tmp_path / "fire.ndjson"
    assert review_cli(stack, "history", "export", player.incident_id, "-o",
                      str(exported)).returncode == 0
    lines = exported.read_text().splitlines()
    # Drop event 3: event 4 then follows event 2, a gap.
    broken = tmp_path / "broken.ndjson"
    broken.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    out = review_cli(stack, "history", "import", str(broken))
    assert out.returncode == 1
    assert out.stderr.strip() == (f"lifeline-review: {broken}:3: events[2]: event 4 of incident "
                                  f"{player.incident_id} follows event 2: the history has a gap"
                                  " or a repeat")
    garbled = tmp_path / "garbled.ndjson"
    garbled.write_text(lines[0] + "\n{\"declared\": {\"grade\": \"GRADE_IX\"}}\n")
    out = review_cli(stack, "history", "import", str(garbled))
    assert out.returncode == 1 and f"{garbled}:2: not an incident event" in out.stderr
    # Nothing of either file was kept: the incident's own history is still the only one.
    histories = player.review.ListHistories(review_pb2.ListHistoriesRequest()).histories
    assert [h.incident_id for h in histories] == [player.incident_id]
    player.close()
