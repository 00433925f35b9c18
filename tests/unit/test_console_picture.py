"""The console's picture: numbered changes, a reconnecting browser given exactly what it
missed, a fresh snapshot when that is no longer kept."""

from __future__ import annotations

import asyncio

from lifeline_console.picture import Picture


def test_a_change_is_numbered_once_and_a_repeat_changes_nothing() -> None:
    picture = Picture()
    first = picture.put("incident", "i-1", {"id": "i-1", "state": "WARNING"})
    assert first is not None and first.seq == 1
    assert picture.put("incident", "i-1", {"id": "i-1", "state": "WARNING"}) is None
    assert picture.put("incident", "i-1", {"id": "i-1", "state": "DECLARED"}) is not None
    assert picture.seq == 2
    assert picture.snapshot() == (2, {**{k: [] for k in picture.things},
                                      "incident": [{"id": "i-1", "state": "DECLARED"}]})


def test_a_browser_that_reconnects_gets_exactly_what_it_missed() -> None:
    picture = Picture()
    for n in range(5):
        picture.put("unit", f"u-{n}", {"id": f"u-{n}"})
    missed = picture.since(2)
    assert missed is not None
    assert [(c.seq, c.key) for c in missed] == [(3, "u-2"), (4, "u-3"), (5, "u-4")]
    assert picture.since(5) == []


def test_a_browser_too_far_behind_or_from_another_console_needs_a_snapshot() -> None:
    picture = Picture(keep=3)
    for n in range(6):
        picture.put("unit", f"u-{n}", {"id": f"u-{n}"})
    assert picture.since(1) is None   # changes 2 and 3 are no longer kept
    assert picture.since(3) is not None
    assert picture.since(99) is None  # a number this picture never gave
    assert picture.since(-1) is None


def test_a_fresh_snapshot_of_a_kind_removes_what_it_no_longer_lists() -> None:
    picture = Picture()
    picture.put("warning", "w-1", {"id": "w-1"})
    picture.put("warning", "w-2", {"id": "w-2"})
    picture.replace("warning", [("w-2", {"id": "w-2"}), ("w-3", {"id": "w-3"})])
    assert sorted(picture.things["warning"]) == ["w-2", "w-3"]
    changes = picture.since(2)
    assert changes is not None
    assert [(c.key, c.doc) for c in changes] == [("w-1", None), ("w-3", {"id": "w-3"})]


def test_a_waiting_stream_wakes_for_a_change_and_not_before() -> None:
    async def scenario() -> tuple[bool, bool]:
        picture = Picture()
        quiet = await picture.wait_after(0, timeout=0.05)
        waiter = asyncio.create_task(picture.wait_after(0, timeout=5))
        await asyncio.sleep(0)  # the point: one turn of the loop, so the waiter waits first
        picture.put("road", "r-1", {"id": "r-1", "closed": True})
        await picture.notify()
        return quiet, await waiter

    assert asyncio.run(scenario()) == (False, True)
