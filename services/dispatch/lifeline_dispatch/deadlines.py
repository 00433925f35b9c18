"""Dispatch's deadline watch: an order's deadline passed unmet is recorded as overdue and
escalated to the commander, exactly once per deadline, at the field time it fell due."""

from __future__ import annotations

from lifeline.clock import FieldClock
from lifeline.incident.model import ACTIVE, due_deadlines, state_name
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_dispatch.application import DispatchApp

WATCH_SECONDS = 0.25


def watch(rt: Runtime, app: DispatchApp, field: FieldClock) -> None:
    active = [state_name(s) for s in ACTIVE]

    async def check() -> None:
        field_now = field.now()
        if field_now is None:
            return
        due: list[str] = []
        token = ""
        while True:
            incidents, token = await rt.views.page("incident", incident_pb2.Incident,
                                                   page_size=1000, page_token=token,
                                                   statuses=active)
            due += [i.id for i in incidents if due_deadlines(i, field_now)]
            if not token:
                break
        if due:
            await rt.write(lambda: app.record_overdue(due, field_now, rt.now()))

    rt.every("deadline watch", WATCH_SECONDS, check)
