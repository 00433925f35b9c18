"""The relay saves the last position it confirmed, even one confirmed while an earlier
save was still being written (a quiet service then showed that event as unrelayed for good,
and the fuzz ledger waited on it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from lifeline.bus import relay as relay_module
from lifeline.bus.relay import OutboxRelay


class App:
    def on_recorded(self, listener: Callable[..., None]) -> None:
        pass


async def test_a_batch_confirmed_during_a_save_is_saved_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "SAVE_POSITION_SECONDS", 0.01)
    relay = OutboxRelay(App(), None, "ledger")  # type: ignore[arg-type]
    saving, release = threading.Event(), threading.Event()
    saved: list[int] = []

    def save(position: int) -> None:  # the store, slow for the first save
        saving.set()
        release.wait(5)
        saved.append(position)

    monkeypatch.setattr(relay, "_save_position", save)
    relay._confirmed = 3
    relay._save_later()
    await asyncio.to_thread(saving.wait, 5)
    relay._confirmed = 4  # the next batch, confirmed while 3 is being written
    relay._save_later()
    release.set()
    assert relay._saving is not None
    await asyncio.wait_for(relay._saving, 5)
    assert saved == [3, 4]
