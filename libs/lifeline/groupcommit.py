"""Group commit: writes that arrive while another is being committed go in together.

Threads hand their writes to a `GroupCommit`. A thread that finds nobody committing
commits its own write at once (no wait on a quiet system); the writes that arrive
meanwhile queue, and when the commit ends the first of them commits the whole queue in one
transaction. Under load every write still waits for at most one commit before its own,
and N concurrent writes cost about one transaction, one table lock and one flush of the
write-ahead log instead of N.

A group that fails is committed again one write at a time, so a write that breaks a rule
(a version taken by another writer, a tracking row already there) fails alone and never
takes its neighbours with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

W = TypeVar("W")  # a write
R = TypeVar("R")  # what committing it returns

#: At most this many writes in one transaction.
MAX_GROUP = 64


class Separately(Exception):
    """Raised by a group's commit when nothing was committed and each write must be tried
    on its own (one of them broke a rule): the group is committed again one by one."""


@dataclass
class _Pending(Generic[W, R]):
    write: W
    turn: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    result: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[W, R]):
    """`commit(write)` from many threads; `alone(write)` commits one write, `together(writes)`
    commits several in one transaction (returning their results in order) or raises
    `Separately` having committed nothing. `joins(write)` says whether a write may share a
    transaction (a large one goes alone)."""

    def __init__(self, alone: Callable[[W], R],
                 together: Callable[[Sequence[W]], Sequence[R]],
                 joins: Callable[[W], bool] = lambda _: True,
                 max_group: int = MAX_GROUP) -> None:
        self._alone, self._together, self._joins = alone, together, joins
        self._max = max_group
        self._lock = threading.Lock()
        self._queue: list[_Pending[W, R]] = []
        self._committing = False
        #: Writes committed in a group of more than one (how much grouping happened).
        self.grouped = 0

    @property
    def waiting(self) -> int:
        """How many writes wait for the commit under way to end."""
        with self._lock:
            return len(self._queue)

    def commit(self, write: W) -> R:
        if not self._joins(write):
            return self._alone(write)
        pending: _Pending[W, R] = _Pending(write)
        with self._lock:
            self._queue.append(pending)
            pending.leads = not self._committing
            self._committing = True
        if not pending.leads:
            pending.turn.wait()  # committed by a leader, or handed the lead
        if pending.leads:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            group, self._queue = self._queue[:self._max], self._queue[self._max:]
        try:
            self._commit(group)
        finally:
            with self._lock:
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._committing = False
                else:
                    following.leads = True
            for pending in group:
                pending.turn.set()
            if following is not None:
                following.turn.set()

    def _commit(self, group: list[_Pending[W, R]]) -> None:
        if len(group) > 1:
            try:
                results = self._together([p.write for p in group])
            except Separately:
                pass
            except BaseException as error:  # an outage: every write of the group failed
                for pending in group:
                    pending.error = error
                return
            else:
                for pending, result in zip(group, results, strict=True):
                    pending.result = result
                self.grouped += len(group)
                return
        for pending in group:
            try:
                pending.result = self._alone(pending.write)
            except BaseException as error:
                pending.error = error
