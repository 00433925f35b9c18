"""Warnings reach people: each raised warning notifies the parties of its cell and hazard
(grid officer, district duty officer, departments) and follows them with an escalation
chain until someone acknowledges it.

Policies and acknowledgement deadlines are data (`escalation.toml`, its semantics written
there). A warning's chain is an `Escalation` aggregate; each party's notification about a
warning is a `Notification` aggregate, whose events the outbox publishes on
`lifeline.monitor.notification.<party>.<event>` so an SMS gateway or an app subscribes to
exactly its own. Monitor follows its own warning events (the consumer coupled risks use):
raised starts the chain, a worse colour restarts it, an acknowledgement stops it, a clear
ends it. Steps fall due on the field clock and are recorded at the time they fell due,
exactly once (the chain's version guards a second writer).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Recording, Tracking
from google.protobuf.message import Message
from lifeline.clock import FieldClock
from lifeline.common.v1 import common_pb2
from lifeline.events import (
    Cause,
    ProtoAggregate,
    event_of,
    from_timestamp,
    meta_of,
    stable_id,
    to_timestamp,
)
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow

from lifeline_monitor.domain import HazardWatch, watch_id_of

if TYPE_CHECKING:
    from lifeline.runtime import Runtime

L = common_pb2.WarningLevel
S = pb.EscalationStatus
N = pb.NotificationStatus
COLOURS = {"blue": L.WARNING_LEVEL_BLUE, "yellow": L.WARNING_LEVEL_YELLOW,
           "orange": L.WARNING_LEVEL_ORANGE, "red": L.WARNING_LEVEL_RED}
ROLES = ("grid_officer", "duty_officer", "departments")
CHANNELS = ("app", "sms", "phone", "email", "radio")
MAX_REPEAT = 5
NOTIFICATION_SUBJECT = "lifeline.monitor.notification"


class PolicyError(ValueError):
    """A policy file refused: which field, what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"escalation policies: {where}: {problem}")


@dataclass(frozen=True)
class Step:
    notify: tuple[str, ...]
    channel: str
    #: Minutes to wait for an acknowledgement after this step; None: the colour's deadline.
    delay: float | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    hazards: frozenset[str]
    steps: tuple[Step, ...]
    repeat: int


@dataclass(frozen=True)
class Policies:
    #: Minutes to acknowledge per colour; a colour missing has no deadline.
    deadlines: dict[int, float]
    policies: tuple[Policy, ...]

    def for_hazard(self, hazard: str) -> Policy:
        for policy in self.policies:
            if hazard in policy.hazards:
                return policy
        for policy in self.policies:
            if "*" in policy.hazards:
                return policy
        return self.policies[0]

    def by_id(self, policy_id: str) -> Policy:
        for policy in self.policies:
            if policy.id == policy_id:
                return policy
        return self.policies[0]

    def wait(self, policy: Policy, step: int, level: int) -> timedelta | None:
        """How long step (1-based) waits for an acknowledgement; None: no deadline."""
        delay = policy.steps[step - 1].delay
        if delay is None:
            delay = self.deadlines.get(level)
        return None if delay is None else timedelta(minutes=delay)


def load_policies(path: Path | None = None) -> Policies:
    """The policies shipped with monitor (or those in path), checked."""
    text = path.read_text() if path else \
        resources.files("lifeline_monitor").joinpath("escalation.toml").read_text()
    return parse_policies(tomllib.loads(text))


def parse_policies(data: dict[str, Any]) -> Policies:
    deadlines: dict[int, float] = {}
    for colour, minutes in data.get("deadlines", {}).items():
        if colour not in COLOURS:
            raise PolicyError(f"deadlines.{colour}", f"not a colour ({', '.join(COLOURS)})")
        if not isinstance(minutes, int | float) or not 0 < minutes <= 24 * 60:
            raise PolicyError(f"deadlines.{colour}", "minutes, more than 0, at most a day")
        deadlines[COLOURS[colour]] = float(minutes)
    policies = []
    for index, raw in enumerate(data.get("policies", [])):
        where = f"policies[{index}]"
        steps = []
        for number, step in enumerate(raw.get("steps", [])):
            here = f"{where}.steps[{number}]"
            notify = tuple(step.get("notify", []))
            if not notify:
                raise PolicyError(f"{here}.notify", "name at least one party")
            for party in notify:
                if party not in ROLES and not (party.startswith("party:") and party[6:]):
                    raise PolicyError(f"{here}.notify", f"{party!r} is not one of "
                                                        f"{', '.join(ROLES)} or party:<id>")
            if step.get("channel") not in CHANNELS:
                raise PolicyError(f"{here}.channel", f"one of {', '.join(CHANNELS)}")
            delay = step.get("delay")
            if delay is not None and (not isinstance(delay, int | float) or delay <= 0):
                raise PolicyError(f"{here}.delay", "minutes, more than 0")
            steps.append(Step(notify, step["channel"], delay))
        repeat = raw.get("repeat", 0)
        if not isinstance(repeat, int) or not 0 <= repeat <= MAX_REPEAT:
            raise PolicyError(f"{where}.repeat", f"0 to {MAX_REPEAT}")
        if not raw.get("id") or not steps:
            raise PolicyError(where, "needs an id and at least one step")
        policies.append(Policy(raw["id"], frozenset(raw.get("hazards", ["*"])), tuple(steps),
                               repeat))
    if not policies:
        raise PolicyError("policies", "at least one")
    return Policies(deadlines, tuple(policies))


def party_token(party: str) -> str:
    """A party as one NATS subject token ('.' would split it; names never hold '~')."""
    return party.replace(".", "~")


def notification_subject(party: str, event: str = "*") -> str:
    return f"{NOTIFICATION_SUBJECT}.{party_token(party)}.{event}"


def escalation_id_of(warning_id: str) -> UUID:
    return stable_id("escalation", warning_id)


def notification_id_of(warning_id: str, party: str) -> UUID:
    return stable_id("notification", warning_id, party)


class Notification(ProtoAggregate):
    """One party's notification about one warning."""

    EVENT_TYPE = pb.NotificationEvent

    @classmethod
    def subject_key(cls, wrapper: Message) -> str:
        """The party, as the subject token between the aggregate and the event."""
        _, event = event_of(wrapper)
        party = event.notification.party if event.DESCRIPTOR.name == "WarningNotified" \
            else event.party
        return party_token(party)

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        at = meta_of(wrapper).occurred_at
        if field == "notified":
            times = self.view.times_notified if "view" in vars(self) else 0
            self.view: pb.PartyNotification = pb.PartyNotification()
            self.view.CopyFrom(event.notification)
            self.view.notified_at.CopyFrom(at)
            self.view.status = N.NOTIFICATION_STATUS_WAITING
            self.view.times_notified = times + 1
        elif field == "acknowledged":
            self.view.status = N.NOTIFICATION_STATUS_ACKNOWLEDGED
            self.view.acknowledged_by = event.by
            self.view.acknowledged_at.CopyFrom(at)
        elif field == "withdrawn":
            self.view.status = N.NOTIFICATION_STATUS_WITHDRAWN

    @property
    def waiting(self) -> bool:
        return bool(self.view.status == N.NOTIFICATION_STATUS_WAITING)


class Escalation(ProtoAggregate):
    """One warning's escalation chain."""

    EVENT_TYPE = pb.EscalationEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        at = meta_of(wrapper).occurred_at
        if field == "started":
            # A restart keeps whom the chain notified: their notifications still wait.
            earlier = list(self.view.notified) if event.restart else []
            restarts = self.view.restarts + 1 if event.restart else 0
            self.view: pb.Escalation = pb.Escalation(
                warning_id=event.warning_id, policy=event.policy, level=event.level,
                status=S.ESCALATION_STATUS_RUNNING, started_at=at, restarts=restarts,
                notified=earlier)
        elif field == "step_reached":
            v = self.view
            v.step, v.round = event.step, event.round
            v.ClearField("next_due")
            if event.HasField("next_due"):
                v.next_due.CopyFrom(event.next_due)
            v.notified.extend(p for p in event.parties if p not in v.notified)
        elif field == "stopped":
            v = self.view
            v.status = event.status
            v.ClearField("next_due")
            if event.status == S.ESCALATION_STATUS_ACKNOWLEDGED:
                v.acknowledged_by = event.by
                v.acknowledged_at.CopyFrom(at)
                v.acknowledged_by_notified = event.by_notified_party

    @property
    def running(self) -> bool:
        return bool(self.view.status == S.ESCALATION_STATUS_RUNNING)


def parties_of(step: Step, responsible: pb.Responsible) -> list[tuple[str, str]]:
    """(party, role) a step names for a warning, in order, each once."""
    found: list[tuple[str, str]] = []
    for name in step.notify:
        if name == "grid_officer":
            found.append((responsible.grid_officer, "grid_officer"))
        elif name == "duty_officer":
            found.append((responsible.duty_officer, "duty_officer"))
        elif name == "departments":
            found.extend((d, "department") for d in responsible.departments)
        else:
            found.append((name.removeprefix("party:"), "party"))
    seen: set[str] = set()
    return [(p, r) for p, r in found if p and not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


class Chains:
    """The use cases of escalation chains, over monitor's application."""

    def __init__(self, app: ServiceApplication, policies: Policies) -> None:
        self.app, self.policies = app, policies

    # ---- the warning's events ----

    def warning_moved(self, field: str, event: Any, cause: Cause, now: datetime
                      ) -> list[ProtoAggregate]:
        """A warning was raised, updated, acknowledged or cleared: start, restart, stop or
        end its chain. Answers the aggregates to record."""
        warning_id = event.warning_id
        chain = self.app.find(Escalation, escalation_id_of(warning_id))
        if field == "raised":
            if chain is not None:
                return []  # a redelivered raise after the chain was written
            # From the event, not the watch's state now (it may have moved on since).
            raised = pb.Warning(id=warning_id, hazard=event.hazard, grid_cell=event.grid_cell,
                                location=event.location, level=event.level,
                                evidence=event.evidence, responsible=event.responsible)
            return self._start(None, raised, cause, now)
        if chain is None:
            return []
        if field == "updated":
            if event.level <= chain.view.level:
                return []
            watch = self._watch(warning_id)
            if watch is None:
                return []
            warning = pb.Warning()
            warning.CopyFrom(watch.warning)
            warning.level = event.level
            return self._start(chain, warning, cause, now)
        if field == "acknowledged":
            if not chain.running:
                return []
            by = cause.actor
            chain.record("stopped", pb.EscalationStopped(
                warning_id=warning_id, status=S.ESCALATION_STATUS_ACKNOWLEDGED, by=by,
                by_notified_party=by in chain.view.notified), cause, now)
            return [chain, *self._each_waiting(chain, lambda n: n.record(
                "acknowledged", pb.NotificationAcknowledged(
                    warning_id=warning_id, party=n.view.party, by=by), cause, now))]
        if field == "cleared":
            if chain.view.status == S.ESCALATION_STATUS_ENDED:
                return []
            chain.record("stopped", pb.EscalationStopped(
                warning_id=warning_id, status=S.ESCALATION_STATUS_ENDED), cause, now)
            return [chain, *self._each_waiting(chain, lambda n: n.record(
                "withdrawn", pb.NotificationWithdrawn(warning_id=warning_id,
                                                      party=n.view.party), cause, now))]
        return []

    def _watch(self, warning_id: str) -> HazardWatch | None:
        parts = warning_id.split("/")
        if len(parts) != 3:
            return None
        watch = self.app.find(HazardWatch, watch_id_of(parts[0], parts[1]))
        if watch is None or getattr(watch, "warning", None) is None \
                or watch.warning.id != warning_id:
            return None
        return watch

    def _each_waiting(self, chain: Escalation, change: Callable[[Notification], None]
                      ) -> list[ProtoAggregate]:
        changed: list[ProtoAggregate] = []
        for party in chain.view.notified:
            notification = self.app.find(Notification,
                                         notification_id_of(chain.view.warning_id, party))
            if notification is not None and notification.waiting:
                change(notification)
                changed.append(notification)
        return changed

    def _start(self, chain: Escalation | None, warning: pb.Warning, cause: Cause,
               now: datetime) -> list[ProtoAggregate]:
        policy = self.policies.for_hazard(warning.hazard)
        started = pb.EscalationStarted(warning_id=warning.id, policy=policy.id,
                                       level=warning.level, restart=chain is not None)
        step_cause = Cause(actor="monitor", occurred_at=cause.occurred_at,
                           reason=f"escalation policy {policy.id}: warning "
                                  f"{'escalated' if chain else 'raised'}",
                           correlation_id=warning.id, causation_id=cause.causation_id)
        if chain is None:
            chain = Escalation.start(escalation_id_of(warning.id), "started", started,
                                     step_cause, now)
        else:
            chain.record("started", started, step_cause, now)
        return [chain, *self._notify(chain, warning, 1, 0, cause.occurred_at, policy, now)]

    # ---- time ----

    def fire_due(self, warning_id: str, field_now: datetime, now: datetime
                 ) -> list[ProtoAggregate]:
        """Notify every step of the chain that fell due by field_now, each at the time it
        fell due; nothing when the warning is acknowledged or cleared (the consumer is
        about to stop the chain)."""
        chain = self.app.find(Escalation, escalation_id_of(warning_id))
        if chain is None or not chain.running or not chain.view.HasField("next_due"):
            return []
        watch = self._watch(warning_id)
        if watch is None or watch.active is None or (
                watch.warning.status == pb.WARNING_STATUS_ACKNOWLEDGED
                and getattr(watch, "acknowledged_level", 0) >= chain.view.level):
            return []
        policy = self.policies.by_id(chain.view.policy)
        changed: list[ProtoAggregate] = [chain]
        while chain.running and chain.view.HasField("next_due") \
                and from_timestamp(chain.view.next_due) <= field_now:
            due = from_timestamp(chain.view.next_due)
            step, round_ = chain.view.step + 1, chain.view.round
            if step > len(policy.steps):
                step, round_ = 1, round_ + 1
            if round_ > policy.repeat:
                chain.record("stopped", pb.EscalationStopped(
                    warning_id=warning_id, status=S.ESCALATION_STATUS_EXHAUSTED),
                    Cause(actor="monitor", occurred_at=due, correlation_id=warning_id,
                          reason=f"escalation policy {policy.id}: every step notified, "
                                 "nobody acknowledged"), now)
                break
            warning = pb.Warning()
            warning.CopyFrom(watch.warning)
            warning.level = chain.view.level
            changed.extend(a for a in self._notify(chain, warning, step, round_, due, policy,
                                                   now) if a is not chain)
        return changed

    def _notify(self, chain: Escalation, warning: pb.Warning, step: int, round_: int,
                at: datetime, policy: Policy, now: datetime) -> list[ProtoAggregate]:
        wait = self.policies.wait(policy, step, chain.view.level)
        parties = parties_of(policy.steps[step - 1], warning.responsible)
        cause = Cause(actor="monitor", occurred_at=at, correlation_id=warning.id,
                      reason=f"escalation policy {policy.id}: step {step}"
                             + (f", round {round_ + 1}" if round_ else ""))
        reached = pb.EscalationStepReached(warning_id=warning.id, step=step, round=round_,
                                           parties=[p for p, _ in parties])
        if wait is not None:
            reached.next_due.CopyFrom(to_timestamp(at + wait))
        chain.record("step_reached", reached, cause, now)
        changed: list[ProtoAggregate] = [chain]
        channel = policy.steps[step - 1].channel
        for party, role in parties:
            view = pb.PartyNotification(
                warning_id=warning.id, party=party, role=role, channel=channel, step=step,
                round=round_, level=warning.level, hazard=warning.hazard,
                grid_cell=warning.grid_cell, location=warning.location,
                evidence=warning.evidence, cell_name=warning.responsible.cell_name,
                district=warning.responsible.district, policy=policy.id)
            if wait is not None:
                view.ack_deadline.CopyFrom(to_timestamp(at + wait))
            notified = pb.WarningNotified(notification=view)
            notification_id = notification_id_of(warning.id, party)
            notification = self.app.find(Notification, notification_id)
            if notification is None:
                notification = Notification.start(notification_id, "notified", notified,
                                                  cause, now)
            else:
                notification.record("notified", notified, cause, now)
            changed.append(notification)
        return changed

    def record(self, aggregates: Sequence[ProtoAggregate], tracking: Tracking | None = None
               ) -> list[Recording]:
        return self.app.record(*aggregates, tracking=tracking)


def next_due(chain: pb.Escalation) -> tuple[datetime | None, timedelta]:
    """When a running chain's next step falls due on the field clock (kept on the read
    model, so the watch reads only the chains due, not every one running)."""
    running = chain.status == S.ESCALATION_STATUS_RUNNING and chain.HasField("next_due")
    return (from_timestamp(chain.next_due) if running else None), timedelta(0)


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, Escalation):
        chain = aggregate.view
        return [ViewRow("escalation", chain.warning_id, chain, status=S.Name(chain.status),
                        due=next_due(chain)[0])]
    if isinstance(aggregate, Notification):
        n = aggregate.view
        return [ViewRow("notification", f"{n.party}|{n.warning_id}", n,
                        status=N.Name(n.status), category=n.party)]
    return []


#: How often due steps are looked for (service time).
WATCH_SECONDS = 0.25


#: Something that follows monitor's warning events: (event field, event, cause, service
#: now) -> the aggregates to record with the event's tracking.
Move = Callable[[str, Any, Cause, datetime], Sequence[Any]]


def follow(rt: Runtime, field: FieldClock, *moves: Move) -> Callable[[str, Any], list[Any]]:
    """What the warning consumer records beside coupled risks (the chains' moves, the CAP
    feed), each caused by the warning event at its field time."""

    def also(name: str, event: Any) -> list[Any]:
        meta = event.meta
        occurred_at = from_timestamp(meta.occurred_at)
        if occurred_at <= rt.now() + timedelta(minutes=5):  # a clock far ahead moves nothing
            field.observe(occurred_at)
        cause = Cause(actor=meta.actor, via=meta.via, occurred_at=occurred_at,
                      correlation_id=event.warning_id,
                      causation_id=f"{meta.aggregate_id}/{meta.sequence}")
        return [a for move in moves for a in move(name, event, cause, rt.now())]

    return also


def field_clock(rt: Runtime, field: FieldClock,
                engine_now: Callable[[datetime], float | None]
                ) -> Callable[[], datetime | None]:
    """Now on the field clock steps fall due on: in production the service clock; in drills
    (`LIFELINE_FIELD_CLOCK=observed`) the latest field time monitor was told of (readings,
    warnings, acknowledgements); None before any."""

    def field_now() -> datetime | None:
        service_now = rt.now()
        told = field.now(timedelta(0), service_now)
        if not field.observed:
            return told
        read = engine_now(service_now)
        if read is not None:
            at = datetime.fromtimestamp(read, UTC)
            told = at if told is None or at > told else told
        return told

    return field_now


def watch(rt: Runtime, chains: Chains, field_now: Callable[[], datetime | None]) -> None:
    """Notify each chain's steps as they fall due on the field clock."""

    async def check() -> None:
        now = field_now()
        if now is None:
            return
        due = [c.warning_id for c in await rt.views.due(
            "escalation", pb.Escalation, service_now=rt.now(), field_now=now)]
        for warning_id in due:
            await rt.write(lambda w=warning_id: (  # type: ignore[misc]
                None, chains.record(chains.fire_due(w, now, rt.now()))),
                read_your_writes=True)  # the next check reads the view

    async def fill_due() -> None:
        # Chains projected before the read model kept their next step's time.
        await rt.views.fill_due("escalation", pb.Escalation, next_due)

    rt.on_start(fill_due)
    rt.every("monitor escalation chains", WATCH_SECONDS, check)
