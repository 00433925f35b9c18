"""Delivery: every notification that waits goes out through its party's channels in order
(the policy step's kind of channel first), each with its retries (exponential backoff,
full jitter); a channel whose last try failed falls through to the next, the last one to
a dead letter. Every try is a `DeliveryRecorded` event on the notification, so the inbox
and the API show it; delivery stops as soon as the notification is acknowledged."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import httpx
from eventsourcing.persistence import Recording
from lifeline.errors import LifelineError, Unavailable
from lifeline.events import Cause, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication

from lifeline_monitor.channels.adapters import (
    Channel,
    DeliveryFailed,
    Email,
    GatewayMessage,
    Webhook,
)
from lifeline_monitor.channels.config import Channels, ChannelSpec, Retry
from lifeline_monitor.channels.links import Links
from lifeline_monitor.channels.message import Outgoing
from lifeline_monitor.escalation.model import FINAL, Notification, notification_id_of

if TYPE_CHECKING:
    from lifeline.runtime import Runtime

log = logging.getLogger(__name__)
OUTCOME = pb.DeliveryOutcome
N = pb.NotificationStatus
#: The kinds of channel a policy step's channel prefers.
PREFERRED = {"app": ("webhook", "chat"), "sms": ("sms",), "phone": ("voice",),
             "email": ("email",)}
MAX_KEPT = 50
#: Deliveries under way at once (each mostly waits on the network).
MAX_CONCURRENT = 64


def ordered(specs: Sequence[ChannelSpec], step_channel: str) -> list[ChannelSpec]:
    """The party's channels, those of the step's kind first, the rest in their order."""
    first = PREFERRED.get(step_channel, ())
    return sorted(specs, key=lambda s: s.kind not in first)


def backoff(retry: Retry, attempt: int, jitter: Callable[[], float] = random.random
            ) -> float:
    """Seconds to wait after try `attempt` failed: full jitter over an exponential cap."""
    return jitter() * min(retry.max_backoff, retry.backoff * 2 ** (attempt - 1))


def finished(n: pb.PartyNotification) -> bool:
    """Delivered or dead-lettered for the party's latest notification."""
    return any(a.round == n.times_notified and a.outcome in FINAL for a in n.deliveries)


def record_attempt(app: ServiceApplication, warning_id: str, party: str,
                   attempt: pb.DeliveryAttempt, cause: Cause, now: datetime
                   ) -> tuple[bool, list[Recording]]:
    """Record one try on the notification; answers whether it still waits (False: it was
    acknowledged or withdrawn meanwhile, and delivery stops)."""
    notification = app.find(Notification, notification_id_of(warning_id, party))
    if notification is None:
        return False, []
    notification.record("delivery", pb.DeliveryRecorded(
        warning_id=warning_id, party=party, attempt=attempt), cause, now)
    return notification.waiting, app.record(notification)


Record = Callable[[pb.DeliveryAttempt], Awaitable[bool]]


async def deliver(channels: Sequence[Channel], outgoing_for: Callable[[Channel], Outgoing],
                  record: Record,
                  sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                  jitter: Callable[[], float] = random.random) -> bool:
    """Try each channel in order until one takes it; answers whether one did. `record`
    keeps each outcome and answers False once the notification no longer waits."""
    for index, channel in enumerate(channels):
        outgoing = outgoing_for(channel)
        n = outgoing.notification
        retry = channel.spec.retry
        reason = ""
        for attempt in range(1, retry.tries + 1):
            try:
                await asyncio.wait_for(channel.send(outgoing), retry.timeout)
            except (DeliveryFailed, TimeoutError) as error:
                reason = str(error) or "timed out"
            else:
                await record(pb.DeliveryAttempt(
                    channel=channel.spec.kind, target=channel.target, attempt=attempt,
                    outcome=OUTCOME.DELIVERY_OUTCOME_DELIVERED, round=n.times_notified))
                return True
            still_waiting = await record(pb.DeliveryAttempt(
                channel=channel.spec.kind, target=channel.target, attempt=attempt,
                outcome=OUTCOME.DELIVERY_OUTCOME_FAILED, reason=reason, round=n.times_notified))
            if not still_waiting:
                return False
            if attempt < retry.tries:
                await sleep(backoff(retry, attempt, jitter))
        following = channels[index + 1] if index + 1 < len(channels) else None
        still_waiting = await record(pb.DeliveryAttempt(
            channel=channel.spec.kind, target=channel.target, attempt=retry.tries,
            outcome=OUTCOME.DELIVERY_OUTCOME_FELL_BACK if following else
            OUTCOME.DELIVERY_OUTCOME_DEAD_LETTERED,
            reason=f"{retry.tries} tries failed, the last: {reason}"[:200],
            next_channel=following.spec.kind if following else "", round=n.times_notified))
        if not still_waiting:
            return False
    return False


class Deliveries:
    """Monitor's deliveries: follows its notifications in the read model (a snapshot, then
    each change as the projector saves it) and delivers each that waits."""

    def __init__(self, rt: Runtime, app: ServiceApplication, channels: Channels, links: Links,
                 base_url: str, field_now: Callable[[], datetime | None]) -> None:
        self.rt, self.app, self.channels, self.links = rt, app, channels, links
        self.base_url, self.field_now = base_url, field_now
        smtp = channels.smtp
        self.tls = ssl.create_default_context(cafile=smtp.ca_file or None) \
            if smtp is not None and smtp.starttls else None
        self.client: httpx.AsyncClient | None = None
        #: Deliveries under way, by (warning, party, round): one each.
        self.running: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        self.slots: asyncio.Semaphore | None = None

    def adapters(self, n: pb.PartyNotification) -> list[Channel]:
        assert self.client is not None
        found: list[Channel] = []
        for spec in ordered(self.channels.of(n.party), n.channel):
            if spec.kind in ("webhook", "chat"):
                found.append(Webhook(spec, self.client))
            elif spec.kind == "email" and self.channels.smtp is not None:
                found.append(Email(spec, self.channels.smtp, self.tls))
            elif self.channels.gateway is not None:
                found.append(GatewayMessage(spec, self.channels.gateway, self.client))
        return found

    def outgoing(self, n: pb.PartyNotification, channel: str) -> Outgoing:
        token = self.links.token(n.warning_id, n.party, n.level, channel)
        return Outgoing(n, f"{self.base_url}/ack/{token}",
                        f"ACK {self.links.code(n.warning_id, n.party)}",
                        f"{n.warning_id}|{n.party}|{n.times_notified}", self.rt.now())

    def offer(self, n: pb.PartyNotification) -> None:
        if n.status != N.NOTIFICATION_STATUS_WAITING or not self.channels.of(n.party) \
                or finished(n):
            return
        key = (n.warning_id, n.party, n.times_notified)
        if key in self.running:
            return
        copy = pb.PartyNotification()
        copy.CopyFrom(n)  # the live view's message is shared
        task = asyncio.create_task(self._deliver(copy))
        self.running[key] = task
        task.add_done_callback(lambda _: self.running.pop(key, None))

    async def _deliver(self, n: pb.PartyNotification) -> None:
        assert self.slots is not None
        # Resumed after a restart: the channels that already fell through stay skipped.
        done = {(a.channel, a.target) for a in n.deliveries if a.round == n.times_notified
                and a.outcome == OUTCOME.DELIVERY_OUTCOME_FELL_BACK}
        channels = [c for c in self.adapters(n) if (c.spec.kind, c.target) not in done]

        async def record(attempt: pb.DeliveryAttempt) -> bool:
            at = self.field_now() or self.rt.now()
            attempt.at.CopyFrom(to_timestamp(at))
            cause = Cause(actor="monitor", occurred_at=at, correlation_id=n.warning_id,
                          reason=f"delivery to {n.party} by {attempt.channel}")
            return await self.rt.write(lambda: record_attempt(
                self.app, n.warning_id, n.party, attempt, cause, self.rt.now()))

        def outgoing(channel: Channel) -> Outgoing:
            return self.outgoing(n, channel.spec.kind)

        # The fallback order, and each channel sent as well on its own.
        orders = [[c for c in channels if not c.spec.also],
                  *([c] for c in channels if c.spec.also)]
        async with self.slots:
            results = await asyncio.gather(*(deliver(order, outgoing, record)
                                             for order in orders if order),
                                           return_exceptions=True)
        for failure in results:
            if isinstance(failure, BaseException):
                log.error("delivery of %s to %s stopped: %s", n.warning_id, n.party, failure)

    async def run(self) -> None:
        """Follow the notifications until the service stops."""
        if self.client is None:
            self.client = httpx.AsyncClient(follow_redirects=False)
            self.slots = asyncio.Semaphore(MAX_CONCURRENT)
        waiting = [N.Name(N.NOTIFICATION_STATUS_WAITING)]
        with self.rt.live.following("notification", what="deliveries") as watch:
            found, position = await self.rt.views.snapshot("notification",
                                                           pb.PartyNotification, waiting)
            for n in found:
                self.offer(n)
            try:
                async for change in watch.changes(after=position):
                    assert isinstance(change.doc, pb.PartyNotification)
                    self.offer(change.doc)
            except Unavailable:
                return  # the service is stopping
            except LifelineError as error:
                log.warning("deliveries: %s; following again", error)
