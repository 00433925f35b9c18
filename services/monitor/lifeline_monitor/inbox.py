"""A party's inbox: the notifications that wait for it, overdue first, and a follow that
streams them as they arrive (from the read model, polled: the service's NATS user may not
subscribe to its own subjects, and a follower must not hold a database connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from lifeline.events import from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.views import Views

N = pb.NotificationStatus
WAITING = N.Name(N.NOTIFICATION_STATUS_WAITING)
#: What one inbox lists at most (the newest of what is done, after all that waits).
MAX_LISTED = 1000
FOLLOW_POLL_SECONDS = 0.5
MAX_FOLLOW_SECONDS = 24 * 3600


async def notifications(views: Views, party: str, include_done: bool = False
                        ) -> list[pb.PartyNotification]:
    found: list[pb.PartyNotification] = []
    token = ""
    while len(found) < 10 * MAX_LISTED:
        page, token = await views.page("notification", pb.PartyNotification, page_size=1000,
                                       page_token=token, category=party,
                                       status="" if include_done else WAITING)
        found.extend(page)
        if not token:
            break
    return found


def overdue(n: pb.PartyNotification, now: datetime | None) -> bool:
    return (now is not None and n.status == N.NOTIFICATION_STATUS_WAITING
            and n.HasField("ack_deadline") and from_timestamp(n.ack_deadline) <= now)


def ordered(found: list[pb.PartyNotification], now: datetime | None
            ) -> pb.ListInboxResponse:
    """Overdue first (the longest overdue first), then what waits by its deadline (those
    without one last), then what is done, newest first."""

    def deadline(n: pb.PartyNotification) -> float:
        return n.ack_deadline.seconds if n.HasField("ack_deadline") else float("inf")

    late = sorted((n for n in found if overdue(n, now)), key=deadline)
    waiting = sorted((n for n in found if n.status == N.NOTIFICATION_STATUS_WAITING
                      and not overdue(n, now)), key=deadline)
    done = sorted((n for n in found if n.status != N.NOTIFICATION_STATUS_WAITING),
                  key=lambda n: -n.notified_at.seconds)
    listed = [*late, *waiting, *done][:MAX_LISTED]
    return pb.ListInboxResponse(notifications=listed, overdue=len(late))


async def follow(views: Views, party: str, seconds: float, stopping: Callable[[], bool]
                 ) -> AsyncIterator[pb.PartyNotification]:
    """Each notification of the party as it arrives or changes (notified again,
    acknowledged, withdrawn), from now on, for `seconds` at most."""

    def mark(n: pb.PartyNotification) -> tuple[int, int]:
        return n.times_notified, n.status

    seen = {n.warning_id: mark(n) for n in await notifications(views, party, True)}
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not stopping() and loop.time() < until:
        await asyncio.sleep(min(FOLLOW_POLL_SECONDS, max(until - loop.time(), 0)))
        for n in await notifications(views, party, True):
            if seen.get(n.warning_id) != mark(n):
                seen[n.warning_id] = mark(n)
                yield n
