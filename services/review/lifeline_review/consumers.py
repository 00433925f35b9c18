"""Review keeps every incident event dispatch publishes."""

from __future__ import annotations

from google.protobuf.message import Message
from lifeline.bus import OFF_PATH_LINGER_SECONDS
from lifeline.incident.v1 import incident_pb2
from lifeline.runtime import Runtime
from lifeline.store import Taking

from lifeline_review.application import ReviewApp


def subscribe(rt: Runtime, app: ReviewApp) -> None:
    async def handle(subject: str, wrapper: Message, taking: Taking) -> None:
        assert isinstance(wrapper, incident_pb2.IncidentEvent)
        await rt.write(lambda: (None, app.keep(wrapper, rt.now(), taking)))

    rt.consume("dispatch", ["lifeline.dispatch.incident.>"], [incident_pb2.IncidentEvent],
               handle, linger=OFF_PATH_LINGER_SECONDS)
