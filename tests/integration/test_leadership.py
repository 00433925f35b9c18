"""One leader per service, on a real PostgreSQL: a standby takes over when the leader's
session ends (within a poll or two: bench/responsiveness.py measures it; the limit here,
ten times that, catches a standby that never asks again), and a leader cut off while another
took over stops."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from lifeline.leadership import POLL_SECONDS, Leadership, LostLeadership

pytestmark = pytest.mark.integration


async def _terminate(database_url: str, leadership: Leadership) -> None:
    """End the leader's session, waiting until PostgreSQL has (and so released its lock)."""
    assert leadership._conn is not None
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1, 5000)",
                           leadership._conn.get_server_pid())
    finally:
        await conn.close()


def test_a_standby_waits_and_takes_over_when_the_leader_goes(database_url: str) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        leader, standby = Leadership(database_url, "dispatch"), Leadership(database_url,
                                                                           "dispatch")
        other = Leadership(database_url, "review")
        assert await leader.acquire(stop)
        assert await other.acquire(stop)  # each service has a leader of its own
        assert await standby._try() is False, "two replicas of one service led at once"
        waiting = asyncio.create_task(standby.acquire(stop))
        await leader.release()
        assert await asyncio.wait_for(waiting, POLL_SECONDS * 2 * 10)
        await standby.release()
        await other.release()

    asyncio.run(scenario())


def test_a_leader_cut_off_while_another_took_over_stops(database_url: str) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        leader, standby = Leadership(database_url, "monitor"), Leadership(database_url,
                                                                          "monitor")
        assert await leader.acquire(stop)
        holding = asyncio.create_task(leader.hold(stop))
        # PostgreSQL ends the leader's session (as a failover or a network cut would), and
        # the standby asks before the leader's next check.
        await _terminate(database_url, leader)
        assert await asyncio.wait_for(standby.acquire(stop), 5)
        with pytest.raises(LostLeadership, match="another replica took"):
            await asyncio.wait_for(holding, 5)
        await standby.release()

    asyncio.run(scenario())
