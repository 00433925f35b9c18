"""Dispatch's deadline watch: an order's deadline passed unmet is recorded as overdue and
escalated to the commander, exactly once per deadline, at the field time it fell due.

Overdue is judged in field time, on each incident's own field clock (`FieldClock`): in
production it runs on from the incident's latest reported step at the service clock's pace,
in drills it is the latest field time the service was told of."""

from __future__ import annotations

from datetime import datetime

from lifeline.clock import FieldClock
from lifeline.incident.model import ACTIVE, due_deadlines, field_time_offset, state_name
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_dispatch.application import DispatchApp

WATCH_SECONDS = 0.25


def watch(rt: Runtime, app: DispatchApp, field: FieldClock) -> None:
    active = [state_name(s) for s in ACTIVE]

    def field_now(incident: incident_pb2.Incident) -> datetime | None:
        return field.now(field_time_offset(incident), rt.now())

    async def check() -> None:
        due: list[str] = []
        token = ""
        while True:
            incidents, token = await rt.views.page("incident", incident_pb2.Incident,
                                                   page_size=1000, page_token=token,
                                                   statuses=active)
            for incident in incidents:
                now = field_now(incident)
                if now is not None and due_deadlines(incident, now):
                    due.append(incident.id)
            if not token:
                break
        if due:
            await rt.write(lambda: app.record_overdue(due, field_now, rt.now()),
                           read_your_writes=True)  # the next check reads the view

    rt.every("deadline watch", WATCH_SECONDS, check)
