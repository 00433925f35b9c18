"""What resources does with dispatch's events: answer requests, release units."""

from __future__ import annotations

from functools import partial

from eventsourcing.persistence import Tracking
from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, event_of, from_timestamp
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_resources.application import Candidates, MoreCandidates, ResourcesApp
from lifeline_resources.domain import distance_km

# Every incident event, so that each incident's versions arrive without gaps and in order
# (a release is never applied before the request); the handler sees only HANDLED.
SUBJECTS = ("lifeline.dispatch.incident.>",)
HANDLED = ("lifeline.dispatch.incident.resources_requested",
           "lifeline.dispatch.incident.unit_released",
           "lifeline.dispatch.incident.closed")


def cause_from(meta: common_pb2.EventMeta) -> Cause:
    """Resources acts at the field time of what dispatch recorded, on its behalf."""
    return Cause(actor="resources", occurred_at=from_timestamp(meta.occurred_at),
                 correlation_id=meta.correlation_id or meta.aggregate_id,
                 causation_id=f"{meta.aggregate_id}/{meta.sequence}")


async def nearest(rt: Runtime, event: incident_pb2.ResourcesRequested, limit: int | None
                  ) -> tuple[Candidates, frozenset[str]]:
    """Available units of each kind asked for, nearest first (at most limit of each), and
    the kinds whose list the limit cut short."""
    candidates: Candidates = {}
    for need in event.requirements:
        located = await rt.views.nearest("unit", need.unit_kind, "AVAILABLE",
                                         event.location.lat, event.location.lon, limit)
        candidates[need.unit_kind] = sorted(
            ((key, distance_km(event.location, lat, lon)) for key, lat, lon in located),
            key=lambda pair: (pair[1], pair[0]))
    return candidates, frozenset(kind for kind, found in candidates.items()
                                 if limit is not None and len(found) == limit)


def subscribe(rt: Runtime, app: ResourcesApp) -> None:
    async def handle(subject: str, wrapper: Message, tracking: Tracking) -> None:
        field, event = event_of(wrapper)
        cause = cause_from(event.meta)
        if field == "resources_requested":
            # The nearest few of each kind, from the read model (the Unit aggregate has the
            # last word on availability); all of them if those few fall short.
            few = 2 * max((n.count for n in event.requirements), default=0) + 32
            for limit in (few, None):
                candidates, cut = await nearest(rt, event, limit)
                try:
                    await rt.write(partial(app.answer_request, event, candidates, cause,
                                           rt.now(), tracking, cut))
                    break
                except MoreCandidates:
                    continue
        elif field == "unit_released":
            await rt.write(lambda: app.release([event.unit_id], event.meta.aggregate_id, cause,
                                               rt.now(), tracking))
        elif field == "closed":
            # What the incident was not reported to have consumed goes back to stock.
            await rt.write(lambda: app.return_reserved(event.meta.aggregate_id, cause,
                                                       rt.now(), tracking))
        else:
            await rt.write(lambda: (None, app.record(tracking=tracking)))

    rt.consume("dispatch", SUBJECTS, [incident_pb2.IncidentEvent], handle, HANDLED)
