"""When an incident's orders fall due: its next deadline and the deadlines passed unmet."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lifeline.events import from_timestamp
from lifeline.incident.phases import ACTIVE, UNFINISHED_ORDER
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2 as pb


def field_time_offset(view: pb.Incident) -> timedelta:
    """How far the incident's field time ran ahead of the service clock at its latest
    reported step (negative for a history told in past field time)."""
    return view.field_time_offset.ToTimedelta()


def next_deadline(view: pb.Incident) -> datetime | None:
    """The field time the incident's next pending deadline falls due, if any (what the
    deadline watch looks for, kept on the read model so it reads only incidents due)."""
    if view.state not in ACTIVE:
        return None
    pending = [from_timestamp(due_at) for order in view.orders
               for due_at, waiting, deadline in (
                   (order.acknowledge_by, order.status == pb.ORDER_STATUS_ISSUED,
                    pb.DEADLINE_ACKNOWLEDGEMENT),
                   (order.complete_by, order.status in UNFINISHED_ORDER,
                    pb.DEADLINE_COMPLETION))
               if waiting and deadline not in order.overdue]
    return min(pending, default=None)


def due_deadlines(view: pb.Incident | IncidentState, field_now: datetime
                  ) -> list[tuple[str, int, Any]]:
    """Deadlines passed unmet by field time field_now and not yet recorded as overdue:
    (order id, which deadline, when it fell due), earliest first."""
    if view.state not in ACTIVE:
        return []
    due = []
    for order in view.orders:
        for deadline, due_at, pending in (
                (pb.DEADLINE_ACKNOWLEDGEMENT, order.acknowledge_by,
                 order.status == pb.ORDER_STATUS_ISSUED),
                (pb.DEADLINE_COMPLETION, order.complete_by, order.status in UNFINISHED_ORDER)):
            if pending and deadline not in order.overdue and \
                    from_timestamp(due_at) <= field_now:
                due.append((order.id, deadline, due_at))
    return sorted(due, key=lambda d: (d[2].seconds, d[2].nanos))

