"""What dispatch does with monitor's warnings and resources' answers."""

from __future__ import annotations

from eventsourcing.persistence import Recording
from google.protobuf.message import Message
from lifeline.clock import FieldClock
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, event_of, from_timestamp
from lifeline.monitor.v1 import monitor_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline.runtime import Runtime
from lifeline.store import Taking

from lifeline_dispatch.application import DispatchApp

# Every event of the aggregates dispatch listens to, so that each aggregate's versions
# arrive without gaps and in order; the handlers see only the *_HANDLED ones.
MONITOR_SUBJECTS = ("lifeline.monitor.warning.>",)
MONITOR_HANDLED = ("lifeline.monitor.warning.raised", "lifeline.monitor.warning.updated",
                   "lifeline.monitor.warning.cleared")
RESOURCES_SUBJECTS = ("lifeline.resources.request.>", "lifeline.resources.unit.>",
                      "lifeline.resources.depot.>")
RESOURCES_HANDLED = ("lifeline.resources.request.answered",
                     "lifeline.resources.unit.status_changed",
                     "lifeline.resources.unit.released",
                     "lifeline.resources.depot.consumed",
                     "lifeline.resources.depot.returned")


def cause_from(meta: common_pb2.EventMeta, correlation_id: str = "") -> Cause:
    """Dispatch records the upstream event at its field time, linked back to it."""
    return Cause(actor=meta.actor or "dispatch", occurred_at=from_timestamp(meta.occurred_at),
                 correlation_id=correlation_id,
                 causation_id=f"{meta.aggregate_id}/{meta.sequence}")


def subscribe(rt: Runtime, app: DispatchApp, field_clock: FieldClock) -> None:
    async def on_warning(subject: str, wrapper: Message, taking: Taking) -> None:
        field, event = event_of(wrapper)
        cause = cause_from(event.meta, correlation_id=event.warning_id)
        field_clock.observe(cause.occurred_at)

        def step() -> tuple[None, list[Recording]]:
            now = rt.now()
            if field == "raised":
                return None, app.open_for_warning(event, cause, now, taking)
            level = common_pb2.WARNING_LEVEL_NONE if field == "cleared" else event.level
            return None, app.warning_moved(event.warning_id, level, cause, now, taking)

        await rt.write(step)

    async def on_resources(subject: str, wrapper: Message, taking: Taking) -> None:
        field, event = event_of(wrapper)
        cause = cause_from(event.meta)
        field_clock.observe(cause.occurred_at)

        def step() -> tuple[None, list[Recording]]:
            now = rt.now()
            if field == "answered":
                return None, app.request_answered(event, cause, now, taking)
            if field in ("consumed", "returned"):
                return None, app.material_used(event, field == "consumed", cause, now,
                                               taking)
            status = (common_pb2.UNIT_STATUS_AVAILABLE if field == "released"
                      else event.status)
            return None, app.unit_reported(event.incident_id, event.unit_id, status, cause, now,
                                           taking)

        await rt.write(step)

    rt.consume("monitor", MONITOR_SUBJECTS, [monitor_pb2.WarningEvent], on_warning,
               MONITOR_HANDLED)
    rt.consume("resources", RESOURCES_SUBJECTS,
               [resources_pb2.RequestEvent, resources_pb2.UnitEvent,
                resources_pb2.DepotEvent], on_resources,
               RESOURCES_HANDLED)
