"""Live views in memory: a watch gets the newest view of each thing, skips what its
snapshot already held, and a watch that falls behind or outlives its service is ended with
a status saying so, without ever holding up the projector."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lifeline.errors import ResourceExhausted, Unavailable
from lifeline.incident.v1 import incident_pb2
from lifeline.live import LiveViews, Watch
from lifeline.views import ViewRow


class Rpc:
    """Stands in for a servicer context: remembers its done callbacks."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def cancelled(self) -> bool:
        return True

    def add_done_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def finish(self) -> None:
        for callback in self.callbacks:
            callback(self)


def row(key: str, version: int, kind: str = "incident") -> ViewRow:
    return ViewRow(kind, key, incident_pb2.Incident(id=key, version=version), status="WARNING")


async def drain(watch: Watch, after: int = 0) -> list[tuple[str, int]]:
    got: list[tuple[str, int]] = []
    changes = watch.changes(after)
    while True:
        try:
            change = await asyncio.wait_for(anext(changes), 0.05)
        except TimeoutError:
            return got
        assert isinstance(change.doc, incident_pb2.Incident)
        got.append((change.key, change.doc.version))


async def test_a_slow_watch_gets_the_newest_view_of_each_thing_once() -> None:
    live = LiveViews("dispatch")
    with live.watch("incident", what="incident", rpc=Rpc()) as watch:  # type: ignore[arg-type]
        live.publish([row("a", 1), row("b", 1)], position=10)
        live.publish([row("a", 2)], position=11)
        live.publish([row("w", 1, kind="warning")], position=12)  # not watched
        assert await drain(watch) == [("a", 2), ("b", 1)]


async def test_what_the_snapshot_held_is_not_sent_again() -> None:
    live = LiveViews("dispatch")
    with live.watch("incident", what="incident", rpc=Rpc()) as watch:  # type: ignore[arg-type]
        live.publish([row("a", 1)], position=10)
        live.publish([row("b", 1)], position=11)
        assert await drain(watch, after=10) == [("b", 1)]


async def test_a_watch_that_falls_behind_is_ended_and_the_others_go_on() -> None:
    live = LiveViews("dispatch")
    with live.watch("incident", what="incident", rpc=Rpc(),  # type: ignore[arg-type]
                    max_pending=2) as slow, \
            live.watch("incident", what="incident", rpc=Rpc()) as other:  # type: ignore[arg-type]
        live.publish([row("a", 1), row("b", 1), row("c", 1)], position=10)
        assert len(live) == 1  # no longer fed, even before its caller reads the news
        with pytest.raises(ResourceExhausted) as ended:
            await drain(slow)
        assert ended.value.code == "RESOURCE_EXHAUSTED"
        assert "watch again" in str(ended.value)
        assert await drain(other) == [("a", 1), ("b", 1), ("c", 1)]


async def test_a_stopping_service_ends_its_watches_saying_so() -> None:
    live = LiveViews("monitor")
    with live.watch("warning", what="warning", rpc=Rpc()) as watch:  # type: ignore[arg-type]
        live.close_all("the service is stopping; watch again in a moment")
        with pytest.raises(Unavailable, match="stopping"):
            await drain(watch)


async def test_a_watch_is_forgotten_when_its_rpc_ends_or_its_block_is_left() -> None:
    live = LiveViews("dispatch")
    rpc = Rpc()
    with live.watch("incident", what="incident", rpc=rpc):  # type: ignore[arg-type]
        assert len(live) == 1
        rpc.finish()  # the caller went away while a message was being written
        assert len(live) == 0
    with live.watch("incident", what="incident", rpc=Rpc()):  # type: ignore[arg-type]
        assert len(live) == 1
    assert len(live) == 0
