"""The use cases of escalation chains: a warning's moves start, restart, stop or end its
chain; steps that fell due notify their parties, each exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Recording
from lifeline.events import Cause, ProtoAggregate, from_timestamp, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication, Taking

from lifeline_monitor.domain import HazardWatch, watch_id_of
from lifeline_monitor.escalation.model import (
    Escalation,
    Notification,
    escalation_id_of,
    notification_id_of,
)
from lifeline_monitor.escalation.policy import Policies, Policy, Step
from lifeline_monitor.rosters import PREFIX

S = pb.EscalationStatus


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
        elif name.startswith("post:"):
            found.append((name, "post"))
        else:
            found.append((name.removeprefix("party:"), "party"))
    seen: set[str] = set()
    return [(p, r) for p, r in found if p and not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


class Chains:
    """The use cases of escalation chains, over monitor's application."""

    def __init__(self, app: ServiceApplication, policies: Policies,
                 holder: Callable[[str, datetime], str] | None = None) -> None:
        self.app, self.policies = app, policies
        #: Who holds a duty post at a time (empty: nobody); None: posts are not resolved.
        self.holder = holder

    def _resolved(self, parties: list[tuple[str, str]], at: datetime
                  ) -> list[tuple[str, str, str]]:
        """(party, role, post): a post is notified to whoever holds it at `at` (nobody: to
        the post itself, so its inbox shows what waits), each person once."""
        found: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for party, role in parties:
            post = ""
            if party.startswith(PREFIX):
                post = party[len(PREFIX):]
                party = (self.holder(post, at) if self.holder else "") or post
            if party not in seen:
                seen.add(party)
                found.append((party, role, post))
        return found

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
            by, via = cause.actor, cause.via
            chain.record("stopped", pb.EscalationStopped(
                warning_id=warning_id, status=S.ESCALATION_STATUS_ACKNOWLEDGED, by=by,
                by_notified_party=by in chain.view.notified, via=via), cause, now)
            return [chain, *self._each_waiting(chain, lambda n: n.record(
                "acknowledged", pb.NotificationAcknowledged(
                    warning_id=warning_id, party=n.view.party, by=by, via=via), cause, now))]
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
        parties = self._resolved(parties_of(policy.steps[step - 1], warning.responsible), at)
        cause = Cause(actor="monitor", occurred_at=at, correlation_id=warning.id,
                      reason=f"escalation policy {policy.id}: step {step}"
                             + (f", round {round_ + 1}" if round_ else ""))
        reached = pb.EscalationStepReached(warning_id=warning.id, step=step, round=round_,
                                           parties=[p for p, _, _ in parties])
        if wait is not None:
            reached.next_due.CopyFrom(to_timestamp(at + wait))
        chain.record("step_reached", reached, cause, now)
        changed: list[ProtoAggregate] = [chain]
        channel = policy.steps[step - 1].channel
        for party, role, post in parties:
            view = pb.PartyNotification(
                warning_id=warning.id, party=party, role=role, channel=channel, step=step,
                round=round_, level=warning.level, hazard=warning.hazard,
                grid_cell=warning.grid_cell, location=warning.location,
                evidence=warning.evidence, cell_name=warning.responsible.cell_name,
                district=warning.responsible.district, policy=policy.id, post=post)
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

    def record(self, aggregates: Sequence[ProtoAggregate], taking: Taking | None = None
               ) -> list[Recording]:
        return self.app.record(*aggregates, taking=taking)

