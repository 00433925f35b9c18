"""Which replica of a service does the work: the one holding its PostgreSQL advisory lock.

A service may run as several replicas for availability. One of them, the leader, serves
gRPC and runs the outbox relay, the projector, the consumers and the deadline watches;
the others wait as hot standbys, with only their health port open. The leader is whoever
holds a session-level advisory lock in the service's database: PostgreSQL releases it the
moment the holder's connection ends, so a replica killed with -9 hands over within a
poll interval, and no two replicas can hold it at once.

Why not run every replica at once: each service keeps per-process state (monitor's alarm
engine, resources' fleet index, the consumers' in-order bookkeeping) that assumes it sees
every event of its aggregates, and JetStream cannot yet pin one aggregate's events to one
member of a consumer group from nats-py. Why not NATS for the lease: every change a
leader makes goes through PostgreSQL anyway, so a replica that cannot reach it can do no
harm, and one that can sees at once whether it still holds the lock.

Clients reach the leader because only it listens on the service port: a gRPC channel over
every replica's address (``ipv4:a:1,b:2``, or a headless Kubernetes Service) connects to
the one that answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib

import asyncpg

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
#: Ask PostgreSQL to notice a vanished holder (a partitioned host, not a killed process:
#: that one's socket closes at once) within about 11 s rather than the kernel's 2 hours.
KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
              "tcp_keepalives_count": "3"}


class LostLeadership(RuntimeError):
    """Another replica took the lock while this one had lost its connection."""


def lock_key(service: str) -> int:
    """The advisory lock's key: stable across processes and releases (not hash())."""
    return zlib.crc32(f"lifeline-{service}-leader".encode())


class Leadership:
    """Holds (or waits for) the service's advisory lock on a connection of its own."""

    def __init__(self, database_url: str, service: str) -> None:
        self.database_url, self.service = database_url, service
        self.key = lock_key(service)
        self._conn: asyncpg.Connection | None = None

    async def _try(self) -> bool | None:
        """One attempt on a fresh or held connection: True when this replica holds the
        lock, False when another one does, None when PostgreSQL cannot be reached."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self.database_url, timeout=POLL_SECONDS * 4,
                    server_settings={**KEEPALIVES,
                                     "application_name": f"lifeline-{self.service}-leader"})
            got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key,
                                            timeout=POLL_SECONDS * 4)
            return bool(got)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            log.debug("leader lock: %s", error)
            await self._drop()
            return None

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait until this replica leads (True), or until stopping is set (False)."""
        announced = False
        while not stopping.is_set():
            if await self._try():
                if announced:
                    log.warning("lifeline-%s: leading now (the leader's lock was released)",
                                self.service)
                return True
            if not announced:
                log.info("lifeline-%s: standing by; another replica leads", self.service)
                announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_SECONDS)
        return False

    async def hold(self, stopping: asyncio.Event) -> None:
        """Keep checking the lock's connection while leading. If it breaks, take the lock
        again on a new one; raise LostLeadership if another replica has it by then. While
        PostgreSQL is down nobody can take it, and nobody can write either."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_SECONDS)
            if stopping.is_set():
                return
            try:
                assert self._conn is not None
                await self._conn.fetchval("SELECT 1", timeout=POLL_SECONDS * 4)
                continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
                    AssertionError):
                await self._drop()
            while not stopping.is_set():
                held = await self._try()
                if held:
                    log.warning("lifeline-%s: lock connection re-established; still leading",
                                self.service)
                    break
                if held is False:
                    raise LostLeadership(f"lifeline-{self.service}: another replica took "
                                         "the leader's lock while this one was cut off")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), POLL_SECONDS)

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), POLL_SECONDS)
            self._conn = None

    async def release(self) -> None:
        """Hand over at once on a clean stop (closing the session releases the lock)."""
        await self._drop()
