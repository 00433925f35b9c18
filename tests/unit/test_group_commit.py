"""Group commit without a database: writes that arrive during a commit share the next one,
a write that breaks a rule fails alone, an outage fails its whole group."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from lifeline.groupcommit import GroupCommit, Separately


class Store:
    """Commits ints; a negative one breaks a rule; `outage` fails every commit. The first
    commit waits until `release` is set, so the writes sent meanwhile queue behind it."""

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.transactions: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()  # a commit has started
        self.outage = False
        self.lock = threading.Lock()

    def alone(self, write: int) -> int:
        return self.together([write])[0]

    def together(self, writes: Sequence[int]) -> list[int]:
        self.entered.set()
        self.release.wait(10)
        if self.outage:
            raise ConnectionError("the database went away")
        if any(w < 0 for w in writes):
            if len(writes) > 1:
                raise Separately
            raise ValueError(f"{writes[0]} breaks the rule")
        with self.lock:
            self.committed.extend(writes)
            self.transactions.append(list(writes))
        return [w * 10 for w in writes]


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.001)
    return True


def commit_while_the_first_waits(store: Store, group: GroupCommit[int, int],
                                 writes: list[int]) -> list[object]:
    """The first write starts committing; the others arrive while it waits; then it ends."""
    def commit(write: int) -> object:
        try:
            return group.commit(write)
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(writes)) as pool:
        first = pool.submit(commit, writes[0])
        assert store.entered.wait(10)
        queued = [pool.submit(commit, w) for w in writes[1:]]
        assert wait_for(lambda: group.waiting == len(writes) - 1)
        store.release.set()
        return [first.result(), *(f.result() for f in queued)]


def test_writes_sent_during_a_commit_share_the_next_transaction() -> None:
    store = Store()
    group: GroupCommit[int, int] = GroupCommit(store.alone, store.together)
    answers = commit_while_the_first_waits(store, group, list(range(1, 21)))
    assert answers == [n * 10 for n in range(1, 21)]  # each got its own result
    assert store.transactions == [[1], list(range(2, 21))]
    assert group.grouped == 19


def test_a_write_that_breaks_a_rule_fails_alone_and_its_neighbours_commit() -> None:
    store = Store()
    group: GroupCommit[int, int] = GroupCommit(store.alone, store.together)
    answers = commit_while_the_first_waits(store, group, [1, 2, -3, 4])
    assert answers[:2] == [10, 20] and answers[3] == 40
    assert isinstance(answers[2], ValueError) and "-3 breaks the rule" in str(answers[2])
    assert sorted(store.committed) == [1, 2, 4]


def test_an_outage_fails_every_write_of_the_group_and_the_next_commit_works() -> None:
    store = Store()
    group: GroupCommit[int, int] = GroupCommit(store.alone, store.together)
    store.outage = True
    answers = commit_while_the_first_waits(store, group, [1, 2, 3])
    assert all(isinstance(a, ConnectionError) for a in answers)
    store.outage = False
    assert group.commit(5) == 50 and store.committed == [5]


def test_a_write_that_may_not_join_is_committed_on_its_own() -> None:
    store = Store()
    store.release.set()
    group: GroupCommit[int, int] = GroupCommit(store.alone, store.together,
                                               joins=lambda w: w < 100)
    assert group.commit(500) == 5000 and store.transactions == [[500]]


@pytest.mark.parametrize("threads", [2, 16])
def test_many_threads_committing_at_once_each_get_their_own_result(threads: int) -> None:
    store = Store()
    store.release.set()
    group: GroupCommit[int, int] = GroupCommit(store.alone, store.together, max_group=8)
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(group.commit, range(2000)))
    assert answers == [n * 10 for n in range(2000)]
    assert sorted(store.committed) == list(range(2000))
    assert max(len(t) for t in store.transactions) <= 8
