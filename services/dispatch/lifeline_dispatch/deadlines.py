"""Dispatch's deadline watch: an order's deadline passed unmet is recorded as overdue and
escalated to the commander, exactly once per deadline, at the field time it fell due.

Overdue is judged in field time, on each incident's own field clock (`FieldClock`): in
production it runs on from the incident's latest reported step at the service clock's pace,
in drills it is the latest field time the service was told of."""

from __future__ import annotations

from datetime import datetime, timedelta

from lifeline.clock import FieldClock
from lifeline.incident.deadlines import due_deadlines, field_time_offset, next_deadline
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_dispatch.application import DispatchApp

WATCH_SECONDS = 0.25


def watch(rt: Runtime, app: DispatchApp, field: FieldClock) -> None:
    def field_now(incident: incident_pb2.Incident) -> datetime | None:
        return field.now(field_time_offset(incident), rt.now())

    async def check() -> None:
        # Only the incidents whose next deadline has fallen due (the read model keeps each
        # incident's next deadline in field time and its field-time offset).
        observed = field.now(timedelta(0), rt.now()) if field.observed else None
        if field.observed and observed is None:
            return  # a drill that has not started
        incidents = await rt.views.due("incident", incident_pb2.Incident,
                                       service_now=rt.now(), field_now=observed)
        due: list[str] = []
        for incident in incidents:
            now = field_now(incident)
            if now is not None and due_deadlines(incident, now):
                due.append(incident.id)
        if due:
            await rt.write(lambda: app.record_overdue(due, field_now, rt.now()),
                           read_your_writes=True)  # the next check reads the view

    async def fill_due() -> None:
        # Incidents projected before the read model kept their next deadline.
        await rt.views.fill_due("incident", incident_pb2.Incident,
                                lambda v: (next_deadline(v), field_time_offset(v)))

    rt.on_start(fill_due)
    rt.every("deadline watch", WATCH_SECONDS, check)
