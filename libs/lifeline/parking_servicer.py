"""The ParkingService every service answers: list, retry and discard parked messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import Recording
from google.protobuf.message import Message

from lifeline.clock import Clock
from lifeline.common.v1 import parking_pb2 as pb
from lifeline.common.v1 import parking_pb2_grpc
from lifeline.edge import cause_of
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause
from lifeline.grpcutil import Server
from lifeline.parking import WAITING, Parking
from lifeline.store import ServiceApplication
from lifeline.views import Views

T = TypeVar("T")
R = TypeVar("R", bound=Message)


class Consumer(Protocol):
    """A consumer that parks messages, and applies them again on an operator's retry."""

    consumer: str

    async def retry_parked(self, ident: UUID, cause: Cause) -> int: ...


class Host(Protocol):
    """What the servicer takes from the service's runtime (its views and consumers exist
    once the service has started)."""

    clock: Clock
    views: Views

    @property
    def app(self) -> ServiceApplication: ...

    @property
    def inboxes(self) -> Sequence[Consumer]: ...

    def now(self) -> datetime: ...

    async def command(self, step: Callable[[ServiceApplication], tuple[T, list[Recording]]],
                      answer: Callable[[T], R]) -> R: ...


def _parking_uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidArgument("id", "not a parking id (a UUID as ListParked shows it)") from None


class ParkingServicer(parking_pb2_grpc.ParkingServiceServicer):
    """The same three calls on every service; retries run through the consumer that
    parked the message, in this process."""

    def __init__(self, runtime: Host) -> None:
        self.rt = runtime

    async def ListParked(self, request: pb.ListParkedRequest, context: Any
                         ) -> pb.ListParkedResponse:
        parkings, token = await self.rt.views.page(
            "parking", pb.Parking, page_size=request.page.page_size,
            page_token=request.page.page_token, status=WAITING)
        return pb.ListParkedResponse(parkings=parkings, next_page_token=token)

    async def RetryParked(self, request: pb.RetryParkedRequest, context: Any
                          ) -> pb.RetryParkedResponse:
        parking = await self._load(request.id)
        inbox = next((i for i in self.rt.inboxes if i.consumer == parking.view.consumer), None)
        if inbox is None:
            raise RuleViolation("retry-by-its-consumer", f"consumer {parking.view.consumer} "
                                "does not run in this service")
        applied = await inbox.retry_parked(parking.id, cause_of(self.rt.clock,
                                                                reason="retried"))
        after = await self._load(request.id)
        return pb.RetryParkedResponse(parking=after.summary(), applied=applied)

    async def DiscardParked(self, request: pb.DiscardParkedRequest, context: Any
                            ) -> pb.DiscardParkedResponse:
        ident = _parking_uuid(request.id)
        cause = cause_of(self.rt.clock, reason=request.reason or "discarded")

        def step(app: ServiceApplication) -> tuple[tuple[Parking, int], Any]:
            parking = app.load(Parking, ident, "parking", request.id)
            version = parking.discard_head(cause, self.rt.now())
            return (parking, version), app.record(parking)

        # A command: a client's retry with the same idempotency key discards once.
        return await self.rt.command(step, lambda done: pb.DiscardParkedResponse(
            parking=done[0].summary(), discarded_version=done[1]))

    async def _load(self, text: str) -> Parking:
        ident = _parking_uuid(text)
        return await asyncio.to_thread(self.rt.app.load, Parking, ident, "parking", text)


def register(server: Server, runtime: Host) -> None:
    server.add(parking_pb2_grpc.add_ParkingServiceServicer_to_server, ParkingServicer(runtime),
               pb.DESCRIPTOR.services_by_name["ParkingService"].full_name)

