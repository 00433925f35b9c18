"""The escalation model: one warning's chain (`Escalation`) and one party's notification
about one warning (`Notification`), their ids and the subjects their events go out on."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.utils import register_topic
from google.protobuf.message import Message
from lifeline.events import ProtoAggregate, event_of, meta_of, stable_id
from lifeline.monitor.v1 import monitor_pb2 as pb

S = pb.EscalationStatus
N = pb.NotificationStatus
NOTIFICATION_SUBJECT = "lifeline.monitor.notification"
#: Delivery attempts a notification's view keeps (the latest).
MAX_DELIVERIES_KEPT = 50
FINAL = (pb.DELIVERY_OUTCOME_DELIVERED, pb.DELIVERY_OUTCOME_DEAD_LETTERED)


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
            earlier = self.view if "view" in vars(self) else pb.PartyNotification()
            self.view: pb.PartyNotification = pb.PartyNotification()
            self.view.CopyFrom(event.notification)
            self.view.notified_at.CopyFrom(at)
            self.view.status = N.NOTIFICATION_STATUS_WAITING
            self.view.times_notified = earlier.times_notified + 1
            self.view.deliveries.extend(earlier.deliveries)
        elif field == "acknowledged":
            self.view.status = N.NOTIFICATION_STATUS_ACKNOWLEDGED
            self.view.acknowledged_by = event.by
            self.view.acknowledged_via = event.via
            self.view.acknowledged_at.CopyFrom(at)
        elif field == "delivery":
            attempt = event.attempt
            self.view.deliveries.append(attempt)
            del self.view.deliveries[:-MAX_DELIVERIES_KEPT]
            if attempt.round == self.view.times_notified and attempt.outcome in FINAL:
                self.view.delivery = attempt.outcome
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
                v.acknowledged_via = event.via

    @property
    def running(self) -> bool:
        return bool(self.view.status == S.ESCALATION_STATUS_RUNNING)


# Histories stored before this module was split name the old module.
register_topic("lifeline_monitor.escalation:Notification", Notification)
register_topic("lifeline_monitor.escalation:Escalation", Escalation)
