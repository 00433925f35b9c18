"""Escalation chains on a simulation clock: a RED warning notifies its cell's parties; left
unacknowledged it escalates through each step of its policy exactly once, at each step's
time; an acknowledgement stops the chain; a worse colour restarts it; the events of each
party's notification go out on a subject of that party's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from lifeline import bus
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, meta_of
from lifeline.identity.nats import party_permissions
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor.domain import HazardWatch, Sensor
from lifeline_monitor.escalation import chains, model, policy

L = common_pb2.WarningLevel
S = pb.EscalationStatus
START = datetime(2031, 7, 20, 16, 0, tzinfo=UTC)
XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)
RESPONSIBLE = pb.Responsible(district="xuhui", district_name="Xuhui District",
                             grid_officer="wang-fang", duty_officer="xuhui-duty-officer",
                             departments=["water", "police", "traffic"],
                             cell_name="Xujiahui underpass")


class Store:
    """What the chains need of monitor's application: find and record, in memory, with
    every recorded event kept in order."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Any] = {}
        self.events: list[tuple[str, Any]] = []

    def find(self, cls: type[Any], aggregate_id: UUID) -> Any:
        found = self.aggregates.get(aggregate_id)
        return found if isinstance(found, cls) else None

    def record(self, *aggregates: ProtoAggregate, taking: Any = None) -> list[Any]:
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                wrapper = event.payload
                self.events.append((bus.subject_for("monitor", wrapper, type(aggregate)),
                                    wrapper))
            self.aggregates[aggregate.id] = aggregate
        return []


class World:
    def __init__(self) -> None:
        self.clock = SimulationClock(START)
        self.store = Store()
        self.chains = chains.Chains(self.store, policy.load_policies())  # type: ignore[arg-type]
        sensor = Sensor.register(pb.RegisterSensorRequest(
            id="wl-xjh", kind="water_level", hazard="urban_flooding", location=XUJIAHUI,
            unit_of_measure="cm", direction=pb.DIRECTION_HIGHER_IS_WORSE,
            thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50)),
            self.cause(), START)
        self.sensor = sensor.view
        self.watch: HazardWatch | None = None

    def cause(self, actor: str = "sensor-gateway") -> Cause:
        return Cause(actor=actor, occurred_at=self.clock.now())

    def reading(self, level: int) -> None:
        """The gauge moves to a colour: the watch records it, the chain follows."""
        reading = pb.Reading(sensor_id="wl-xjh", value=float(level))
        if self.watch is None:
            self.watch = HazardWatch.open(self.sensor, level, reading, self.cause(), START,
                                          lambda: RESPONSIBLE)
        else:
            self.watch.sensor_moved(self.sensor, level, reading, self.cause(), START)
        self._follow(self.watch)

    def acknowledge(self, actor: str) -> None:
        assert self.watch is not None
        self.watch.acknowledge(self.watch.warning.id, self.cause(actor), START)
        self._follow(self.watch)

    def _follow(self, watch: HazardWatch) -> None:
        """What the consumer of monitor's own warnings does with each new event."""
        for event in watch.collect_events():
            name, inner = event_of(event.payload)
            meta = meta_of(event.payload)
            cause = Cause(actor=meta.actor, occurred_at=from_timestamp(meta.occurred_at))
            self.store.aggregates[watch.id] = watch
            changed = self.chains.warning_moved(name, inner, cause, START)
            self.store.record(*changed)

    def advance(self, minutes: float) -> None:
        """Time passes; the periodic check runs (several times: exactly once still)."""
        self.clock.advance(timedelta(minutes=minutes))
        for _ in range(3):
            assert self.watch is not None
            self.store.record(*self.chains.fire_due(self.watch.warning.id, self.clock.now(),
                                                    START))

    def steps(self) -> list[tuple[int, int, float, list[str]]]:
        """(step, round, minutes after the start, parties) of every step reached."""
        return [(e.step_reached.step, e.step_reached.round,
                 (from_timestamp(e.step_reached.meta.occurred_at) - START).total_seconds() / 60,
                 list(e.step_reached.parties))
                for _, e in self.store.events if e.WhichOneof("event") == "step_reached"]

    def notified(self) -> list[tuple[str, str, str]]:
        """(subject, party, channel) of every WarningNotified."""
        return [(subject, e.notified.notification.party, e.notified.notification.channel)
                for subject, e in self.store.events if e.WhichOneof("event") == "notified"]

    def chain(self) -> pb.Escalation:
        assert self.watch is not None
        found = self.store.find(model.Escalation, model.escalation_id_of(self.watch.warning.id))
        return found.view  # type: ignore[no-any-return]


def test_a_red_warning_notifies_its_cell_parties_and_escalates_each_step_once() -> None:
    world = World()
    world.reading(L.WARNING_LEVEL_RED)
    warning_id = world.watch.warning.id  # type: ignore[union-attr]
    assert world.notified() == [
        ("lifeline.monitor.notification.wang-fang.notified", "wang-fang", "app"),
        ("lifeline.monitor.notification.water.notified", "water", "app"),
        ("lifeline.monitor.notification.police.notified", "police", "app"),
        ("lifeline.monitor.notification.traffic.notified", "traffic", "app")]
    first = next(e.notified.notification for _, e in world.store.events
                 if e.WhichOneof("event") == "notified")
    assert first.warning_id == warning_id and first.level == L.WARNING_LEVEL_RED
    assert from_timestamp(first.ack_deadline) == START + timedelta(minutes=5)

    world.advance(4.9)
    assert [s[:3] for s in world.steps()] == [(1, 0, 0.0)]
    world.advance(0.2)  # 5.1 min: RED's deadline passed, step 2 at exactly 5 min
    world.advance(20)  # 25.1 min: steps 3 (at 10), round 2's 1, 2, 3 (15, 20, 25)
    assert world.steps() == [
        (1, 0, 0.0, ["wang-fang", "water", "police", "traffic"]),
        (2, 0, 5.0, ["xuhui-duty-officer"]),
        (3, 0, 10.0, ["xuhui-duty-officer", "wang-fang"]),
        (1, 1, 15.0, ["wang-fang", "water", "police", "traffic"]),
        (2, 1, 20.0, ["xuhui-duty-officer"]),
        (3, 1, 25.0, ["xuhui-duty-officer", "wang-fang"])]
    assert ("lifeline.monitor.notification.xuhui-duty-officer.notified",
            "xuhui-duty-officer", "sms") in world.notified()
    world.advance(10)  # repeat is 1: once the last wait passed, the chain is exhausted
    assert world.chain().status == S.ESCALATION_STATUS_EXHAUSTED
    assert len(world.steps()) == 6


def test_an_acknowledgement_stops_the_chain_and_a_worse_colour_restarts_it() -> None:
    world = World()
    world.reading(L.WARNING_LEVEL_ORANGE)
    world.advance(16)  # ORANGE: 15 minutes, then step 2
    assert [s[:3] for s in world.steps()] == [(1, 0, 0.0), (2, 0, 15.0)]
    world.acknowledge("xuhui-duty-officer")
    chain = world.chain()
    assert (chain.status, chain.acknowledged_by, chain.acknowledged_by_notified) == (
        S.ESCALATION_STATUS_ACKNOWLEDGED, "xuhui-duty-officer", True)
    assert from_timestamp(chain.acknowledged_at) == START + timedelta(minutes=16)
    acked = [(s, e.acknowledged.party, e.acknowledged.by) for s, e in world.store.events
             if e.WhichOneof("event") == "acknowledged"]
    assert ("lifeline.monitor.notification.wang-fang.acknowledged", "wang-fang",
            "xuhui-duty-officer") in acked
    world.advance(60)
    assert len(world.steps()) == 2  # stopped: nothing more

    world.reading(L.WARNING_LEVEL_RED)  # at 76 min: the chain restarts at RED's deadline
    chain = world.chain()
    assert (chain.status, chain.level, chain.restarts) == (
        S.ESCALATION_STATUS_RUNNING, L.WARNING_LEVEL_RED, 1)
    world.advance(5)
    assert [s[:3] for s in world.steps()][2:] == [(1, 0, 76.0), (2, 0, 81.0)]
    world.acknowledge("wang-fang")  # the escalated warning is acknowledged again
    assert world.chain().status == S.ESCALATION_STATUS_ACKNOWLEDGED
    world.reading(L.WARNING_LEVEL_NONE)
    assert world.chain().status == S.ESCALATION_STATUS_ENDED


def test_a_cleared_warning_withdraws_what_waits_and_blue_does_not_escalate() -> None:
    world = World()
    world.reading(L.WARNING_LEVEL_BLUE)
    world.advance(600)
    assert [s[:3] for s in world.steps()] == [(1, 0, 0.0)]
    assert not world.chain().HasField("next_due")
    world.reading(L.WARNING_LEVEL_NONE)
    withdrawn = [e.withdrawn.party for _, e in world.store.events
                 if e.WhichOneof("event") == "withdrawn"]
    assert withdrawn == ["wang-fang", "water", "police", "traffic"]


def test_policies_are_checked_when_loaded() -> None:
    policies = policy.load_policies()
    assert policies.for_hazard("gas_leak").id == "life_safety"
    assert policies.for_hazard("urban_flooding").id == "default"
    assert policies.deadlines[L.WARNING_LEVEL_RED] == 5
    with pytest.raises(policy.PolicyError, match=r"policies\[0\].steps\[0\].channel"):
        policy.parse_policies({"policies": [{"id": "x", "steps": [
            {"notify": ["grid_officer"], "channel": "pigeon"}]}]})
    with pytest.raises(policy.PolicyError, match="repeat"):
        policy.parse_policies({"policies": [{"id": "x", "repeat": 9, "steps": [
            {"notify": ["grid_officer"], "channel": "sms"}]}]})


def test_a_party_may_subscribe_to_exactly_its_own_notifications() -> None:
    allowed = party_permissions("wang-fang")["subscribe"]["allow"]
    assert "lifeline.monitor.notification.wang-fang.>" in allowed
    assert not any(s.startswith("lifeline.monitor.warning") or s == "lifeline.>"
                   for s in allowed)
    assert model.notification_subject("a.b", "notified") == \
        "lifeline.monitor.notification.a~b.notified"


def test_histories_stored_before_the_split_still_find_their_aggregates() -> None:
    from eventsourcing.utils import resolve_topic
    from lifeline_monitor.cap.feed import CapFeed
    from lifeline_monitor.cap.model import CapAlertAggregate
    from lifeline_monitor.escalation.model import Escalation, Notification

    for topic, cls in [("lifeline_monitor.escalation:Notification", Notification),
                       ("lifeline_monitor.escalation:Escalation", Escalation),
                       ("lifeline_monitor.cap:CapFeed", CapFeed),
                       ("lifeline_monitor.cap:CapAlertAggregate", CapAlertAggregate)]:
        assert resolve_topic(topic) is cls
