"""The city as the console shows it: every thing on the map by kind and id, and the numbered
changes that made it, so a browser that lost its connection asks for what came after the
last change it drew instead of reloading.

Plain data, no I/O: the feeds put what the services' watches send; the event stream reads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: What the map shows, in the order a snapshot lists it.
KINDS = ("feed", "warning", "incident", "unit", "road", "depot", "coverage")
#: Changes kept for browsers that reconnect; one further behind gets a fresh snapshot.
KEEP_CHANGES = 20_000

Doc = dict[str, Any]


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str
    key: str
    #: The thing as it is now; None when it left the picture (a cleared warning, say).
    doc: Doc | None


class Picture:
    """Things by kind and key, each change numbered; one per console process."""

    def __init__(self, keep: int = KEEP_CHANGES) -> None:
        self.things: dict[str, dict[str, Doc]] = {kind: {} for kind in KINDS}
        self.seq = 0
        self._log: deque[Change] = deque(maxlen=keep)
        self._changed = asyncio.Condition()

    def put(self, kind: str, key: str, doc: Doc | None) -> Change | None:
        """The thing is now `doc` (None: gone). Nothing changes, and no change is numbered,
        when it already is."""
        things = self.things[kind]
        if things.get(key) == doc:
            return None
        if doc is None:
            del things[key]
        else:
            things[key] = doc
        self.seq += 1
        change = Change(self.seq, kind, key, doc)
        self._log.append(change)
        return change

    def replace(self, kind: str, docs: Iterable[tuple[str, Doc]]) -> None:
        """A feed's fresh snapshot of a kind: what it lists is put, what it no longer lists
        leaves the picture."""
        fresh = dict(docs)
        for key in [k for k in self.things[kind] if k not in fresh]:
            self.put(kind, key, None)
        for key, doc in fresh.items():
            self.put(kind, key, doc)

    def snapshot(self) -> tuple[int, dict[str, list[Doc]]]:
        return self.seq, {kind: list(things.values()) for kind, things in self.things.items()}

    def since(self, seq: int) -> list[Change] | None:
        """The changes after `seq`, or None when some of them are no longer kept (or `seq`
        is not one this picture gave: another console process, or one restarted)."""
        if seq > self.seq or seq < 0:
            return None
        if seq == self.seq:
            return []
        if not self._log or self._log[0].seq > seq + 1:
            return None
        start = seq + 1 - self._log[0].seq
        return [self._log[i] for i in range(start, len(self._log))]

    async def notify(self) -> None:
        """Wake the event streams (after a batch of puts)."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_after(self, seq: int, timeout: float) -> bool:
        """Wait until a change after `seq` exists (True) or the timeout passes (False)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.seq > seq), timeout)
            except TimeoutError:
                return False
        return True
