"""Failure is normal: kill -9 any service or restart NATS mid-incident, and the history
ends complete, with no event lost and none duplicated."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import event_of, meta_of
from lifeline.review.v1 import review_pb2, review_pb2_grpc
from lifeline.scenario import SCENARIOS, Player, Scenario, Step, wait_until

from tests.conftest import StackFactory
from tests.e2e import publish_undecodable

FLOOD = SCENARIOS / "underpass_flood.toml"


def stream_counts(stack: Stack, stream: str) -> Counter[str]:
    """How many messages JetStream holds per Nats-Msg-Id (duplicates would show as > 1)."""

    async def read() -> Counter[str]:
        nc = await bus.connect(stack.nats_url or "", "test", **stack.nats_login())
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            counts: Counter[str] = Counter()
            if not info.state.messages:  # an empty stream's first sequence is 0
                return counts
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                counts[(msg.headers or {}).get("Nats-Msg-Id", "")] += 1
            return counts
        finally:
            await nc.close()

    return asyncio.run(read())


def assert_complete(player: Player, stack: Stack, expected: list[str]) -> None:
    history = player.history()
    kinds = [event_of(e)[0] for e in history]
    assert kinds == expected, "the history after the failure differs from an undisturbed run"
    assert [meta_of(e).sequence for e in history] == list(range(1, len(history) + 1))
    incident = player._incident()
    assert incident.version == len(history)
    # Every unit went exactly once, and all came back.
    assigned = [meta_of(e) for e in history if event_of(e)[0] == "unit_assigned"]
    assert len({e.unit_assigned.unit_id for e in history
                if event_of(e)[0] == "unit_assigned"}) == len(assigned) == 4
    for name in ("LIFELINE_DISPATCH", "LIFELINE_RESOURCES", "LIFELINE_MONITOR"):
        duplicated = {k: n for k, n in stream_counts(stack, name).items() if n > 1}
        assert not duplicated, f"{name} holds events twice: {duplicated}"




def reference_kinds(stack: Stack) -> list[str]:
    player = Player(stack.addresses(), stack, say=lambda _: None)
    player.play(Scenario.load(FLOOD))
    kinds = [event_of(e)[0] for e in player.history()]
    player.close()
    return kinds


@pytest.mark.parametrize(("victim", "after"), [
    ("dispatch", "declare"),  # its answer from resources arrives while it is dead
    ("resources", "declare"),  # killed while (or right after) assigning
    ("review", "unit"),  # misses a stretch of the history
    ("monitor", "read"),  # between readings
])
def test_kill_9_mid_incident_loses_and_duplicates_nothing(
        make_stack: StackFactory, victim: str, after: str) -> None:
    expected = reference_kinds(make_stack())
    stack = make_stack()
    player = Player(stack.addresses(), stack, say=lambda _: None,
                    timeout=60)
    killed: list[int] = []

    def chaos(index: int, step: Step) -> None:
        if step.do == after and not killed and index > 2:
            stack.kill9(victim)
            killed.append(index)
            stack.restart_service(victim)

    player.play(Scenario.load(FLOOD), after_step=chaos)
    assert killed, "the scenario never reached the step to kill at"
    assert_complete(player, stack, expected)
    player.close()


def test_nats_restart_under_live_consumers(make_stack: StackFactory) -> None:
    expected = reference_kinds(make_stack())
    stack = make_stack()
    player = Player(stack.addresses(), stack, say=lambda _: None,
                    timeout=60)
    restarted: list[int] = []

    def restart_broker(index: int, step: Step) -> None:
        if step.do in ("declare", "contain"):
            stack.restart_nats()
            restarted.append(index)

    player.play(Scenario.load(FLOOD), after_step=restart_broker)
    assert len(restarted) == 2
    assert_complete(player, stack, expected)
    player.close()


def test_a_poison_message_is_parked_while_the_next_incidents_events_flow(
        make_stack: StackFactory, tmp_path: Path) -> None:
    """A message review can never apply (it does not even decode) is parked after a few
    attempts; a second message of the same aggregate parks behind it; the flood incident
    meanwhile flows and ends complete. Operators see the parking and retry or discard it
    through the CLI."""
    expected = reference_kinds(make_stack())
    stack = make_stack()
    poisoned = str(uuid.uuid4())

    publish_undecodable(stack, poisoned)
    player = Player(stack.addresses(), stack, say=lambda _: None, timeout=60)
    player.play(Scenario.load(FLOOD))
    assert_complete(player, stack, expected)

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(LIFELINE_REVIEW_ADDR=stack.address("review"), LIFELINE_STATE_DIR=str(tmp_path),
               LIFELINE_TOKEN=stack.token("duty-officer", "operator"),
               LIFELINE_TLS_CA=str(stack.authority.ca_file))  # type: ignore[union-attr]

    def review(*args: str) -> str:
        done = subprocess.run([str(Path(sys.executable).parent / "lifeline-review"), *args],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def parked() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = json.loads(review("parked", "--json"))
        waiting = found[0]["waiting"] if found else []
        return found if [m["version"] for m in waiting] == [1, 2] else None

    parking = wait_until(parked, "review to park the poison and the message behind it")[0]
    assert parking["consumer"] == "review-from-dispatch"
    assert parking["upstreamAggregateId"] == poisoned
    head, behind = parking["waiting"]
    assert "DecodeError" in head["error"] and int(head["attempts"]) == bus.MAX_ATTEMPTS
    assert behind["error"] == "parked behind version 1"
    table = review("parked")
    assert parking["id"] in table and "DecodeError" in table

    # Still poison: a retry applies nothing and says why.
    assert review("retry-parked", parking["id"]).startswith("applied 0; 2 still parked")
    assert review("discard-parked", parking["id"], "--reason", "forged").startswith(
        "discarded version 1; 1 still parked")
    assert review("discard-parked", parking["id"]).startswith("discarded version 2; 0 still")
    assert review("parked").strip() == "(none)"
    # Nothing of the poison reached a history; the incident's history is as it was.
    assert len(player.history()) == len(expected)
    player.close()


def test_what_a_killed_consumer_held_reaches_its_replacement_at_once(
        make_stack: StackFactory) -> None:
    """Review dies holding dispatch's events unacknowledged (ack_wait is ten minutes here);
    the review that starts next takes them over at once rather than waiting them out."""
    stack = make_stack({"LIFELINE_ACK_WAIT_SECONDS": "600"})
    officer = stack.token("officer-li", "operator")
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", officer))
    reader = review_pb2_grpc.ReviewServiceStub(stack.channel("review", officer))
    stack.kill9("review")
    incident = dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=common_pb2.GeoPoint(lat=31.23, lon=121.47),
        description="smell of gas on the stairs")).incident

    async def take_and_die() -> int:
        # A review process that took the events, acknowledged none, and was killed.
        nc = await bus.connect(stack.nats_url or "", "doomed review",
                               **stack.nats_login("review"))
        sub = await nc.jetstream().pull_subscribe_bind("review-from-dispatch",
                                                       "LIFELINE_DISPATCH")
        held = await sub.fetch(100, timeout=5)
        await nc.close()
        return len(held)

    assert asyncio.run(take_and_die()) >= 1
    stack.restart_service("review")

    def kept() -> bool:
        try:
            return bool(list(reader.GetIncidentHistory(
                review_pb2.GetIncidentHistoryRequest(incident_id=incident.id), timeout=5)))
        except grpc.RpcError:
            return False

    # A restart however slow the machine, and far short of ack_wait.
    wait_until(kept, "the replacement to keep the incident", timeout=120)
