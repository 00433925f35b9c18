"""A call's work left behind by its caller never ends up logged as an unretrieved failure."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from types import SimpleNamespace
from typing import Any

from lifeline.errors import InvalidArgument
from lifeline.runtime import Runtime


def test_work_that_fails_as_its_caller_goes_away_is_not_logged_as_unretrieved() -> None:
    """The RPC is cancelled (its caller's deadline) in the same moment its work fails: the
    service's log must not get an ERROR 'exception was never retrieved' for a refusal."""
    logged: list[str] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: logged.append(context["message"]))
        runtime: Any = SimpleNamespace(backend_down=None)
        work: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        call = asyncio.ensure_future(Runtime._outcome(runtime, work, "down"))
        await asyncio.sleep(0)  # the call now waits for its work
        work.set_exception(InvalidArgument("incident_id", "is not an incident id"))
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        del work, call
        await asyncio.sleep(0)
        gc.collect()

    asyncio.run(main())
    assert not logged, logged
