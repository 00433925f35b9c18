"""The aggregate cache under threads: a service's projector, consumers and commands read
the same aggregate at once, each from its own thread, while one of them fast-forwards the
cached aggregate in place. Each must get a copy of one moment: never a dict that changed
size while it was copied, never a version from before an event with state from after it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from lifeline.repository import CopyingRepository


class Directory(Aggregate):
    def __init__(self) -> None:
        self.positions: dict[str, tuple[float, float]] = {}

    @event("Listed")
    def list(self, key: str) -> None:
        self.positions[key] = (31.2, 121.4)


class App(Application):
    def construct_repository(self) -> CopyingRepository:
        return CopyingRepository(self.events, cache_maxsize=100)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so interleavings show at once."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_a_copy_from_the_cache_is_one_moment_while_another_thread_fast_forwards_it(
        busy_switching: None) -> None:
    app = App()
    directory = Directory()
    for n in range(300):
        directory.list(f"depot-{n}")
    app.save(directory)
    app.repository.get(directory.id)  # cached from here on
    torn: list[str] = []
    done = threading.Event()

    def write() -> None:
        try:
            for n in range(300, 500):
                latest = app.repository.get(directory.id)
                latest.list(f"depot-{n}")
                app.save(latest)
        finally:
            done.set()

    def read() -> None:
        while not done.is_set():
            try:
                copy = app.repository.get(directory.id)  # fast-forwards, then copies
            except RuntimeError as error:  # dictionary changed size during iteration
                torn.append(str(error))
                continue
            if len(copy.positions) != copy.version - 1:
                torn.append(f"version {copy.version} with {len(copy.positions)} positions")

    threads = [threading.Thread(target=write), *(threading.Thread(target=read)
                                                 for _ in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert torn == []
    assert len(app.repository.get(directory.id).positions) == 500
