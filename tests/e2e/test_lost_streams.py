"""A stream is a cache of its service's outbox: each service's stream deleted three times in
the middle of the flood (after a step, and at random moments inside steps), every service
left running, and the history review keeps and the incident dispatch keeps end as in an
undisturbed run. Then `lifeline republish` asks a running service's relay for a refill."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lifeline import bus
from lifeline.common.v1 import parking_pb2, parking_pb2_grpc
from lifeline.devstack import Stack
from lifeline.identity.nats import STREAM_ADMIN, stream_name
from lifeline.scenario import Player, Scenario, Step, wait_until
from nats.js.errors import NotFoundError

from tests.conftest import StackFactory
from tests.e2e.test_failures import FLOOD, assert_complete, reference_kinds

pytestmark = [pytest.mark.slow]

#: After which step each service's stream is deleted the first time (in the thick of it).
AFTER_STEP = {"monitor": "read", "dispatch": "declare", "resources": "unit",
              "review": "complete"}


def delete_stream(stack: Stack, service: str) -> bool:
    """Delete a service's stream as an operator's mistake would; False if it was gone."""

    async def delete() -> bool:
        nc = await bus.connect(stack.nats_url or "", "operator", **stack.nats_login(STREAM_ADMIN))
        try:
            return bool(await nc.jetstream().delete_stream(stream_name(service)))
        except NotFoundError:
            return False
        finally:
            await nc.close()

    return asyncio.run(delete())


def stream_exists(stack: Stack, service: str) -> bool:
    async def look() -> bool:
        nc = await bus.connect(stack.nats_url or "", "test", **stack.nats_login())
        try:
            await nc.jetstream().stream_info(stream_name(service))
            return True
        except NotFoundError:
            return False
        finally:
            await nc.close()

    return asyncio.run(look())


def nothing_parked(stack: Stack) -> None:
    token = stack.token("duty-officer", "operator")
    for service in Stack.SERVICES:
        stub = parking_pb2_grpc.ParkingServiceStub(stack.channel(service, token))
        parked = stub.ListParked(parking_pb2.ListParkedRequest(), timeout=10).parkings
        assert not parked, f"{service} parked {[p.waiting[0].error for p in parked]}"


def test_each_services_stream_lost_three_times_mid_flood_is_refilled_without_a_restart(
        make_stack: StackFactory, tmp_path: Path) -> None:
    expected = reference_kinds(make_stack())
    stack = make_stack()
    scenario = Scenario.load(FLOOD)
    pids = {name: stack.service(name).pid for name in Stack.SERVICES}
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # Besides once after a given step: twice each at a random moment inside a random step
    # (a timer started after the step before it ends).
    inside: dict[int, list[tuple[float, str]]] = {}
    for service in Stack.SERVICES:
        for index in rng.sample(range(3, len(scenario.steps) - 3), 2):
            inside.setdefault(index, []).append((rng.uniform(0.0, 0.4), service))
    deleted: list[tuple[str, str]] = []
    timers: list[threading.Timer] = []

    def delete(service: str, when: str) -> None:
        # A stream deleted a moment ago may not be back yet: wait for it, then delete it.
        wait_until(lambda: stream_exists(stack, service) and delete_stream(stack, service),
                   f"{service}'s stream to come back", timeout=30)
        deleted.append((service, when))

    def after_step(index: int, step: Step) -> None:
        for service, after in AFTER_STEP.items():
            first = (service, "after a step") not in deleted
            if step.do == after and first and index > 2:
                delete(service, "after a step")
        for delay, service in inside.get(index, []):
            timer = threading.Timer(delay, delete, (service, f"{delay:.2f}s after step {index}"))
            timer.start()
            timers.append(timer)

    player = Player(stack.addresses(), stack, say=lambda _: None, timeout=60)
    try:
        player.play(scenario, after_step=after_step)
    finally:
        for timer in timers:
            timer.join()
    note = f"(seed {seed}, deletions {deleted})"
    for service in Stack.SERVICES:
        assert sum(1 for s, _ in deleted if s == service) == 3, f"{service} {note}"
    for service in Stack.SERVICES:  # the last deletion may be a moment ago
        wait_until(lambda s=service: stream_exists(stack, s),  # type: ignore[misc]
                   f"{service}'s stream to be recreated {note}", timeout=10)
        assert stack.service(service).pid == pids[service], f"{service} restarted {note}"
    assert_complete(player, stack, expected)
    nothing_parked(stack)
    player.close()
    # The same stack, to save starting another: an operator's republish.
    republish_refills_a_stream_through_the_running_service(stack, tmp_path)


def republish_refills_a_stream_through_the_running_service(stack: Stack, state: Path) -> None:
    """An operator rebuilding a cluster: a stream lost after every consumer took it comes
    back holding only what a consumer still needed, and `lifeline republish` fills it
    again through the running service; only an admin may ask."""
    async def count() -> int:
        nc = await bus.connect(stack.nats_url or "", "test", **stack.nats_login())
        try:
            return (await nc.jetstream().stream_info(stream_name("resources"))).state.messages
        except NotFoundError:
            return -1
        finally:
            await nc.close()

    held = asyncio.run(count())
    assert held > 0
    assert delete_stream(stack, "resources")
    wait_until(lambda: stream_exists(stack, "resources"), "the relay to recreate the stream",
               timeout=20)

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(LIFELINE_RESOURCES_ADDR=stack.address("resources"),
               LIFELINE_STATE_DIR=str(state),
               LIFELINE_TLS_CA=str(stack.authority.ca_file))  # type: ignore[union-attr]

    def lifeline(*args: str, role: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "lifeline"), *args],
                              env={**env, "LIFELINE_TOKEN": stack.token("li", role)},
                              capture_output=True, text=True, timeout=60, check=False)

    refused = lifeline("republish", "--service", "resources", role="operator")
    assert refused.returncode == 1 and "permission_denied" in refused.stderr

    done = lifeline("republish", "--service", "resources", role="admin")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("republishing resources's events 1..")
    assert "to LIFELINE_RESOURCES" in done.stdout

    wait_until(lambda: asyncio.run(count()) >= held or None, "the stream to hold again "
               f"the {held} events it held", timeout=20)
