"""The inbox's parking desk: parks what cannot be applied, applies it again on request.

A message is parked with its identity in the same transaction; an operator's retry
applies the waiting ones oldest first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Tracking

from lifeline.bus.ordering import Delivery
from lifeline.bus.subjects import TYPE_HEADER, describe
from lifeline.common.v1 import parking_pb2
from lifeline.errors import RuleViolation
from lifeline.events import Cause
from lifeline.parking import Parking, parking_id
from lifeline.store import ServiceApplication, Taking, retry_conflicts

#: Applies a parked message again (or only tracks it, when it is not for the handler).
Reapply = Callable[[parking_pb2.ParkedMessage, Taking], Awaitable[None]]


class ParkingDesk:
    """Parkings of one consumer: one per upstream aggregate."""

    def __init__(self, app: ServiceApplication, consumer: str, upstream: str,
                 now: Callable[[], datetime], reapply: Reapply) -> None:
        self.app, self.consumer, self.upstream = app, consumer, upstream
        self.now, self.reapply = now, reapply
        self._retrying = asyncio.Lock()

    def _message(self, delivery: Delivery, error: str, attempts: int
                 ) -> parking_pb2.ParkedMessage:
        msg = delivery.msg
        return parking_pb2.ParkedMessage(
            version=delivery.version, subject=msg.subject,
            message_type=(msg.headers or {}).get(TYPE_HEADER, ""), data=msg.data,
            headers={k: v for k, v in (msg.headers or {}).items() if isinstance(v, str)},
            error=error, attempts=attempts)

    def _cause(self) -> Cause:
        return Cause(actor=self.consumer, occurred_at=self.now())

    def hold_if_parked(self, delivery: Delivery) -> bool:
        """Park the next event of an aggregate that has parked ones, behind them (in a
        worker thread)."""
        parking = self.app.find(Parking, parking_id(self.consumer, delivery.aggregate_id))
        head = parking.head if parking is not None else None
        if parking is None or head is None:
            return False
        message = self._message(delivery, f"parked behind version {head.version}", 0)
        Parking.park(parking, self.consumer, self.upstream, delivery.aggregate_id, message,
                     self._cause(), self.now())
        self.app.record(parking, taking=Taking(delivery.tracking))
        return True

    async def park(self, delivery: Delivery, error: str, attempts: int) -> None:
        """Record the message in a parking, with its identity in the same transaction."""
        message = self._message(delivery, error, attempts)

        def step() -> None:
            found = self.app.find(Parking, parking_id(self.consumer, delivery.aggregate_id))
            parking = Parking.park(found, self.consumer, self.upstream, delivery.aggregate_id,
                                   message, self._cause(), self.now())
            self.app.record(parking, taking=Taking(delivery.tracking))

        await asyncio.to_thread(retry_conflicts, step)

    async def retry(self, ident: UUID, cause: Cause) -> int:
        """Apply a parking's waiting messages, oldest first, until one fails again; how
        many were applied. Each writes its effects with the parking's `retried` event."""
        applied = 0
        async with self._retrying:
            while True:
                parking = await asyncio.to_thread(self.app.find, Parking, ident)
                head = parking.head if parking is not None else None
                if parking is None or head is None:
                    return applied
                error = await self._retry_one(parking, head, cause)
                if error is not None:
                    def failed(version: int = head.version, why: str = error) -> None:
                        again = self.app.load(Parking, ident, "parking", str(ident))
                        again.retry_failed(version, why, cause, self.now())
                        self.app.record(again)

                    await asyncio.to_thread(retry_conflicts, failed)
                    return applied
                applied += 1

    async def _retry_one(self, parking: Parking, head: parking_pb2.ParkedMessage,
                         cause: Cause) -> str | None:
        rode: list[bool] = []

        def riders() -> list[Parking]:
            # Afresh on each attempt: a conflict retried sees the parking as it is now.
            current = self.app.load(Parking, parking.id, "parking", str(parking.id))
            current.retried(head.version, cause, self.now())
            rode.append(True)
            return [current]

        tracking = Tracking(f"{self.upstream}/{parking.view.upstream_aggregate_id}",
                            head.version)
        taking = Taking(tracking, riders=riders)
        try:
            await self.reapply(head, taking)
            if not rode:  # the handler wrote nothing: record the retry by itself
                await asyncio.to_thread(retry_conflicts, lambda: self.app.record(taking=taking))
        except RuleViolation as violation:
            if violation.rule == "retry-once":
                return None  # another retry applied it meanwhile
            return describe(violation)
        except Exception as error:
            return describe(error)
        return None
