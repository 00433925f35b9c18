"""Following an application's notification log: the one loop behind the outbox relay and
the read-model projector."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from eventsourcing.persistence import Notification

from lifeline.store import ServiceApplication

log = logging.getLogger(__name__)

POLL_FLOOR_SECONDS = 1.0  # a lost wake-up can delay a follower this long, never stall it
#: Notifications committed in this process kept for a follower at most (beyond, it reads).
FRESH_LIMIT = 10_000


async def retry_forever(what: str, step: Callable[[], Awaitable[None]],
                        stopping: asyncio.Event) -> None:
    """Run step until stopped; on failure log one line and back off (broker or DB down)."""
    delay = 0.1
    while not stopping.is_set():
        try:
            await step()
            delay = 0.1
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("%s: %s: %s; retrying in %.1fs", what, type(error).__name__, error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, 2.0)


class LogFollower(ABC):
    """Reads the notification log in order from a durable position and hands on batches."""

    def __init__(self, app: ServiceApplication, name: str, batch: int = 256) -> None:
        self.app, self.name, self.batch = app, name, batch
        self.position: int | None = None
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._advanced = asyncio.Condition()
        #: What this process just committed, by notification id: the next batch is taken
        #: from here when it follows on from the position, instead of read back from the
        #: log (a thread hop and a query on every hop of a dispatch). The log stays the
        #: source: anything not here (a gap, a restart, a batch too many) is read.
        self._fresh: dict[int, Notification] = {}
        #: How long a batch may wait before it is handled while nobody waits for it
        #: (`wait_for`), gathering what is committed meanwhile into the same batch.
        self.linger = 0.0
        self._wanted = asyncio.Event()
        self._wanted_upto = 0  # the highest notification id someone waits for
        loop = asyncio.get_running_loop()

        def committed(notifications: Sequence[Notification]) -> None:  # a writer's thread
            loop.call_soon_threadsafe(self._offer, notifications)

        app.on_recorded(committed)

    def _offer(self, notifications: Sequence[Notification]) -> None:
        if len(self._fresh) < FRESH_LIMIT:
            self._fresh.update((n.id, n) for n in notifications)
        self._wake.set()

    def _take_fresh(self, after: int, limit: int | None = None) -> list[Notification]:
        taken: list[Notification] = []
        limit = self.batch if limit is None else limit
        while len(taken) < limit and (n := self._fresh.pop(after + 1, None)) is not None:
            taken.append(n)
            after = n.id
        return taken

    async def _linger(self) -> None:
        """Wait up to `linger` seconds unless, or until, someone waits for this follower."""
        if self.linger and self._wanted_upto <= (self.position or 0):
            self._wanted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self.linger)

    @abstractmethod
    async def load_position(self) -> int:
        """The last notification id this follower finished with."""

    @abstractmethod
    async def handle(self, notifications: Sequence[Notification]) -> None:
        """Process a batch and durably record its last id as the new position."""

    async def run(self) -> None:
        await retry_forever(self.name, self._step, self.stopping)

    def hurry(self, notification_id: int) -> None:
        """Handle everything up to this notification without lingering (someone's live
        view waits for it)."""
        if (self.position or 0) < notification_id:
            self._wanted_upto = max(self._wanted_upto, notification_id)
            self._wanted.set()

    async def wait_for(self, notification_id: int, timeout: float = 10.0) -> None:
        """Wait until this follower has handled the given notification."""
        self.hurry(notification_id)
        async with self._advanced:
            await asyncio.wait_for(self._advanced.wait_for(
                lambda: (self.position or 0) >= notification_id), timeout)

    async def _step(self) -> None:
        if self.position is None:
            self.position = await self.load_position()
        self._wake.clear()
        notifications: Sequence[Notification] = self._take_fresh(self.position) or \
            await asyncio.to_thread(self.app.recorder.select_notifications, self.position + 1,
                                    self.batch)
        if self._fresh and notifications:  # read past what was offered: forget it
            self._fresh = {i: n for i, n in self._fresh.items() if i > notifications[-1].id}
        if not notifications:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_FLOOR_SECONDS)
            return
        if self.linger:
            await self._linger()
            more = self._take_fresh(notifications[-1].id, self.batch - len(notifications))
            if more:
                notifications = [*notifications, *more]
        await self.handle(notifications)
        async with self._advanced:
            self.position = notifications[-1].id
            self._advanced.notify_all()
