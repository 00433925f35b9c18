"""The operator's door to a service's outbox: `OutboxService.Republish`, served by every
service, asks its relay to publish its events to its stream again (rebuilding a cluster).

Through the running service rather than beside it: the relay stays the one publisher of
the stream, so events still go out in order, once each per message id, with the service's
own NATS user; and the role matrix decides who may ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lifeline.common.v1 import parking_pb2 as pb
from lifeline.common.v1 import parking_pb2_grpc
from lifeline.errors import Unavailable
from lifeline.identity.nats import stream_name

if TYPE_CHECKING:
    from lifeline.runtime import Runtime


class OutboxServicer(parking_pb2_grpc.OutboxServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def Republish(self, request: pb.RepublishRequest, context: Any
                        ) -> pb.RepublishResponse:
        relay = getattr(self.rt, "relay", None)
        if relay is None:
            raise Unavailable("the outbox relay has not started yet; retry shortly")
        first, last = relay.republish(max(request.from_position, 1) - 1)
        return pb.RepublishResponse(from_position=first + 1, through_position=last,
                                    stream=stream_name(self.rt.settings.service))


def register(runtime: Runtime) -> None:
    runtime.server.add(parking_pb2_grpc.add_OutboxServiceServicer_to_server,
                       OutboxServicer(runtime),
                       pb.DESCRIPTOR.services_by_name["OutboxService"].full_name)
