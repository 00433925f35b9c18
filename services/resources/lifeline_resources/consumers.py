"""What resources does with dispatch's events: answer requests, release units."""

from __future__ import annotations

from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, event_of, from_timestamp
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2
from lifeline.runtime import Runtime
from lifeline.store import Taking

from lifeline_resources.application import ResourcesApp

# Every incident event, so that each incident's versions arrive without gaps and in order
# (a release is never applied before the request); the handler sees only HANDLED.
SUBJECTS = ("lifeline.dispatch.incident.>",)
HANDLED = ("lifeline.dispatch.incident.resources_requested",
           "lifeline.dispatch.incident.unit_released",
           "lifeline.dispatch.incident.closed")


WARNING_SUBJECTS = ("lifeline.monitor.warning.>",)
WARNING_HANDLED = ("lifeline.monitor.warning.raised", "lifeline.monitor.warning.updated",
                   "lifeline.monitor.warning.cleared")


def cause_from(meta: common_pb2.EventMeta) -> Cause:
    """Resources acts at the field time of what dispatch recorded, on its behalf."""
    return Cause(actor="resources", occurred_at=from_timestamp(meta.occurred_at),
                 correlation_id=meta.correlation_id or meta.aggregate_id,
                 causation_id=f"{meta.aggregate_id}/{meta.sequence}")


def subscribe(rt: Runtime, app: ResourcesApp) -> None:
    async def check_coverage(cause: Cause) -> None:
        """After a dispatch or a release: is the city still covered? (Its own write: the
        periodic check repeats it should this one be lost with a crash.)"""
        if app.requirements:
            await rt.write(lambda: app.check_coverage(cause, rt.now()))

    async def handle(subject: str, wrapper: Message, taking: Taking) -> None:
        field, event = event_of(wrapper)
        cause = cause_from(event.meta)
        if field == "resources_requested":
            await rt.write(lambda: app.answer_request(event, cause, rt.now(), taking))
            await check_coverage(cause)
        elif field == "unit_released":
            await rt.write(lambda: app.release([event.unit_id], event.meta.aggregate_id, cause,
                                               rt.now(), taking))
            await check_coverage(cause)
        elif field == "closed":
            # What the incident was not reported to have consumed goes back to stock.
            await rt.write(lambda: app.return_reserved(event.meta.aggregate_id, cause,
                                                       rt.now(), taking))
        else:
            await rt.write(lambda: (None, app.record(taking=taking)))

    # One request at a time: each choice of units sees the one before it (side by side,
    # requests near each other would race for the same nearest units and retry).
    rt.consume("dispatch", SUBJECTS, [incident_pb2.IncidentEvent], handle, HANDLED, lanes=1)

    async def on_warning(subject: str, wrapper: Message, taking: Taking) -> None:
        field, event = event_of(wrapper)
        level = common_pb2.WARNING_LEVEL_NONE if field == "cleared" else event.level
        cause = Cause(actor="resources", occurred_at=from_timestamp(event.meta.occurred_at),
                      correlation_id=event.warning_id,
                      causation_id=f"{event.meta.aggregate_id}/{event.meta.sequence}")
        await rt.write(lambda: app.warning_moved(event.warning_id, level, cause, rt.now(),
                                                 taking))

    # Warnings close the road segments that flood (or burn, or collapse) with them.
    rt.consume("monitor", WARNING_SUBJECTS, [monitor_pb2.WarningEvent], on_warning,
               WARNING_HANDLED)
