"""Acknowledgement from a channel: a signed link or an SMS reply, checked against the
warning and the person's notification, becomes the same acknowledgement as
`AcknowledgeWarning` (recorded as that person's, through that channel), so the chain
stops the same way. A refusal changes nothing."""

from __future__ import annotations

from datetime import datetime

from eventsourcing.persistence import Recording
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb

from lifeline_monitor.application import MonitorApp
from lifeline_monitor.channels.links import Claim, LinkRefused
from lifeline_monitor.channels.message import COLOUR
from lifeline_monitor.domain import HazardWatch, watch_id_of
from lifeline_monitor.escalation.model import Notification, notification_id_of


def acknowledge(app: MonitorApp, claim: Claim, at: datetime, now: datetime
                ) -> tuple[pb.Warning, list[Recording]]:
    """Acknowledge the claim's warning as its party, through its channel."""
    notification = app.find(Notification, notification_id_of(claim.warning_id, claim.party))
    if notification is None:
        raise LinkRefused("this link is not for anyone notified of that warning")
    parts = claim.warning_id.split("/")
    watch = app.find(HazardWatch, watch_id_of(parts[0], parts[1])) if len(parts) == 3 \
        else None
    active = watch.active if watch is not None else None
    if watch is None or active is None or active.id != claim.warning_id:
        raise LinkRefused(f"warning {claim.warning_id} was cleared: nothing to acknowledge",
                          409)
    if active.level > claim.level:
        raise LinkRefused(f"warning {claim.warning_id} is {COLOUR.get(active.level)} since "
                          "this message was sent: use the newest message", 409)
    if active.status == pb.WARNING_STATUS_ACKNOWLEDGED and \
            getattr(watch, "acknowledged_level", 0) >= active.level:
        raise LinkRefused(f"warning {claim.warning_id} is already acknowledged", 409)
    cause = Cause(actor=claim.party, via=claim.channel, occurred_at=at,
                  reason=f"acknowledged through {claim.channel}")
    return app.acknowledge(claim.warning_id, cause, now)
