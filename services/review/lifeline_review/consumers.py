"""Review keeps every incident event dispatch publishes."""

from __future__ import annotations

from eventsourcing.persistence import Tracking
from google.protobuf.message import Message
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime

from lifeline_review.application import ReviewApp

#: Review keeps and measures; it acts on nothing. A burst of an incident's events (a
#: declaration issues a dozen at once) waits this long and is kept after the burst's
#: dispatch, not in its way: kept while dispatch ran, it delayed the next unit assignment.
LINGER_SECONDS = 0.25


def subscribe(rt: Runtime, app: ReviewApp) -> None:
    async def handle(subject: str, wrapper: Message, tracking: Tracking) -> None:
        assert isinstance(wrapper, incident_pb2.IncidentEvent)
        await rt.write(lambda: (None, app.keep(wrapper, rt.now(), tracking)))

    rt.consume("dispatch", ["lifeline.dispatch.incident.>"], [incident_pb2.IncidentEvent],
               handle, linger=LINGER_SECONDS)
