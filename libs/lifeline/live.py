"""Live views: what the read model saves, handed on at once to every watch of a
server-streaming RPC (dispatch's WatchIncidents, monitor's WatchWarnings).

The source is the service's own projector. It follows the notification log in order, wakes
on every write of this process (a floor poll brings another replica's writes within a
second) and builds each changed thing's view; right after it saves a batch, the views go
to the watches. So a watch shows what Get and List answer, and costs no database
connection, NATS subscription or task of its own: one fan-out in memory per process.

A watch that cannot keep up slows nobody: what waits for it is kept per thing (a newer
view of an incident replaces the one not yet sent), and once more than `max_pending`
different things wait, the watch ends with RESOURCE_EXHAUSTED; its caller watches again and
starts from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from lifeline.errors import LifelineError, ResourceExhausted, Unavailable
from lifeline.views import ViewRow

log = logging.getLogger(__name__)

#: Different things (incidents, warnings) that may wait for one watch before it is ended.
MAX_PENDING = 2000
#: The position of a change kept in memory only (a unit's reported position): it has no
#: place in the notification log, so no snapshot already holds it and every watch takes it.
IN_MEMORY = sys.maxsize


@dataclass(frozen=True)
class Change:
    """A thing's view as the projector saved it; `doc` is shared by every watch: read it,
    copy it before changing it."""

    kind: str
    key: str
    status: str
    doc: Message
    #: The notification id up to which the batch that saved it was projected.
    position: int


class Watch:
    """One caller's share of the changes: the kinds it wants, what waits to be sent."""

    def __init__(self, what: str, kinds: Collection[str], max_pending: int) -> None:
        self.what, self.kinds = what, frozenset(kinds)
        self.max_pending = max_pending
        self._pending: dict[tuple[str, str], Change] = {}
        self._ready = asyncio.Event()
        self._ended: LifelineError | None = None

    def offer(self, change: Change) -> None:
        """Never blocks: the projector calls it for every watch."""
        if self._ended is not None:
            return
        key = (change.kind, change.key)
        if key not in self._pending and len(self._pending) >= self.max_pending:
            self.end(ResourceExhausted(
                f"this watch fell behind: more than {self.max_pending} changes waited to be "
                "read; watch again to start from a fresh snapshot"))
            return
        self._pending[key] = change
        self._ready.set()

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def end(self, error: LifelineError) -> None:
        if self._ended is None:
            self._ended = error
            self._pending.clear()
            self._ready.set()

    async def changes(self, after: int = 0) -> AsyncIterator[Change]:
        """Each change as it comes, those at or before position `after` (already in the
        caller's snapshot) left out; raises the error the watch was ended with."""
        while True:
            await self._ready.wait()
            if self._ended is not None:
                raise self._ended
            self._ready.clear()
            batch, self._pending = list(self._pending.values()), {}
            for change in batch:
                if change.position > after:
                    yield change


class LiveViews:
    """The watches of one service process, fed by its projector."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._watches: set[Watch] = set()

    def __len__(self) -> int:
        return len(self._watches)

    def publish(self, rows: Sequence[ViewRow], position: int) -> None:
        """The projector saved these rows, up to notification `position`."""
        if not self._watches:
            return
        for row in rows:
            change = Change(row.kind, row.key, row.status, row.doc, position)
            for watch in tuple(self._watches):
                if row.kind in watch.kinds:
                    watch.offer(change)
                    if watch.ended:  # its caller may be stuck mid-write: feed it no more
                        self.forget(watch, "ended: it fell behind")

    @contextlib.contextmanager
    def watch(self, *kinds: str, what: str, rpc: grpc.aio.ServicerContext[Any, Any],
              max_pending: int = MAX_PENDING) -> Iterator[Watch]:
        """A watch of these view kinds for the length of the block, in the RPC `rpc`;
        leaving the block, however (the caller cancelled, the service stops), or the RPC
        ending forgets it: a response stream abandoned mid-write is not resumed to reach
        the end of its block."""
        watch = Watch(what, kinds, max_pending)
        self._watches.add(watch)
        log.info("%s watch opened (%d open)", what, len(self._watches))

        def done(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            self.forget(watch, "cancelled by its caller" if context.cancelled() else "ended")

        # The stubs type the callback narrower than grpc calls it (with the context).
        rpc.add_done_callback(done)  # type: ignore[arg-type]
        ended = "ended"
        try:
            yield watch
        except asyncio.CancelledError:
            ended = "cancelled by its caller"
            raise
        except LifelineError as error:
            ended = f"ended: {error}"
            raise
        finally:
            self.forget(watch, ended)

    @contextlib.contextmanager
    def following(self, *kinds: str, what: str, max_pending: int = MAX_PENDING
                  ) -> Iterator[Watch]:
        """A watch of these view kinds for the length of the block, for work of the service
        itself (no caller: monitor's deliveries follow its notifications this way)."""
        watch = Watch(what, kinds, max_pending)
        self._watches.add(watch)
        try:
            yield watch
        finally:
            self.forget(watch, "ended")

    def forget(self, watch: Watch, why: str) -> None:
        """Stop feeding a watch; logged once, whichever way it ends first."""
        if watch in self._watches:
            self._watches.discard(watch)
            log.info("%s watch %s (%d still open)", watch.what, why, len(self._watches))

    def close_all(self, reason: str) -> None:
        """End every watch (the service is stopping) with UNAVAILABLE and the reason."""
        for watch in tuple(self._watches):
            watch.end(Unavailable(reason))

