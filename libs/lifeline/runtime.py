"""One service process: its application, read model, outbox relay, consumers and gRPC server.

Every service starts the same way; what differs is handed in by its `bootstrap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Recording
from google.protobuf.message import Message
from grpc_health.v1.health import aio as health_aio
from nats.aio.client import Client as NATS

from lifeline import bus, heap, idempotency, outbox, parking, parking_servicer
from lifeline.clock import Clock, SystemClock
from lifeline.config import Settings
from lifeline.errors import LifelineError, Unavailable
from lifeline.follow import LogFollower, retry_forever
from lifeline.grpcutil import Authenticator, Server, health_probe
from lifeline.identity.nats import LISTENS_TO, consumer_name
from lifeline.leadership import Leadership, LostLeadership
from lifeline.live import LiveViews
from lifeline.store import ServiceApplication, retry_conflicts
from lifeline.tracing import setup_tracing
from lifeline.views import (
    Projector,
    RowsFor,
    Stored,
    Views,
    create_pool,
    stored,
    versioned,
    write_through,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R", bound=Message)
App = TypeVar("App", bound=ServiceApplication)
READ_MODEL_WAIT_SECONDS = 5.0
#: "read model behind" is said at most once in this many seconds, with how often.
BEHIND_LOG_SECONDS = 10.0
BACKEND_CHECK_SECONDS = 0.5


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Take a left-behind task's outcome, so that its failure is not logged as unretrieved
    (its caller was answered already)."""
    if not task.cancelled():
        task.exception()


class Runtime(Generic[App]):
    """What a service's servicer and consumers share."""

    def __init__(self, settings: Settings, app: App, rows_for: RowsFor,
                 clock: Clock | None = None) -> None:
        # Every service keeps a row per parking of its consumers, for ListParked.
        self.settings, self.app = settings, app
        self.rows_for = parking.with_parking_rows(rows_for)
        self.clock: Clock = clock or SystemClock()
        #: Why the service cannot serve now (its database is unreachable), or None.
        self.backend_down: str | None = None
        self.server = Server(Authenticator.configured(settings.security),
                             ready=lambda: self.backend_down,
                             reflection=settings.security.reflection)
        # Every service answers ListParked/RetryParked/DiscardParked, and Republish.
        parking_servicer.register(self.server, self)
        outbox.register(self)
        #: Server-streaming watches of the read model, fed by the projector.
        self.live = LiveViews(settings.service)
        self.port = 0
        self._consumers: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: The attempt running for each idempotency key claimed (its ClientRequest id).
        self._attempts: dict[UUID, asyncio.Future[Any]] = {}
        self.nc: NATS | None = None
        self.inboxes: list[bus.Inbox] = []
        self._repeating: list[tuple[str, float, Callable[[], Awaitable[None]]]] = []
        self._starting: list[Callable[[], Awaitable[None]]] = []
        self._stopping = asyncio.Event()
        #: Set by SIGTERM/SIGINT or a lost leadership: serve_forever then stops the runtime.
        self.halted = asyncio.Event()
        self.exit_code = 0
        #: The lock this process leads by (serve_forever takes it before building).
        self.leadership: Leadership | None = None
        self._behind, self._behind_said = 0, 0.0

    # ---- wiring, called by a service's bootstrap ----

    def consume(self, upstream: str, subjects: Sequence[str],
                message_types: Sequence[type[Message]], handle: bus.Handler,
                handles: Sequence[str] | None = None, linger: float = 0.0,
                lanes: int = bus.LANES) -> None:
        """Consume upstream's events on subjects (every event subject of the aggregates
        listened to, so each aggregate's versions arrive without gaps); handle is called
        for those in handles (all when None), the others are only tracked. A consumer off
        the dispatch path lingers: each batch waits that long for the rest of its burst.
        Up to `lanes` upstream aggregates are handled side by side (1: one at a time)."""
        service = self.settings.service
        if upstream not in LISTENS_TO[service]:
            raise ValueError(f"{service} does not listen to {upstream} in "
                             "lifeline.identity.nats.LISTENS_TO; its NATS user could not")
        self._consumers.append({
            "consumer": consumer_name(service, upstream), "upstream": upstream,
            "subjects": subjects, "handle": handle, "handles": handles, "now": self.now,
            "ack_wait": self.settings.ack_wait, "linger": linger, "lanes": lanes,
            "message_types": {t.DESCRIPTOR.full_name: t for t in message_types},
        })

    def on_start(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run step once the read model is reachable, before the projector, consumers and
        server start (warming an in-memory cache from the views)."""
        self._starting.append(step)

    def every(self, name: str, seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run step every so often while the service runs (deadline watches)."""
        self._repeating.append((name, seconds, step))

    # ---- use-case helpers for servicers and consumers ----

    async def write(self, step: Callable[[], tuple[T, list[Recording]]], *,
                    read_your_writes: bool = False) -> T:
        """Run a read-decide-write step off the event loop (retrying on a concurrent
        change). A consumer's write does not wait for the read model: nobody reads it
        back, and the next hop of a dispatch should not wait on a view. With
        read_your_writes, wait until the read model shows it."""
        result, recordings = await asyncio.to_thread(retry_conflicts, step)
        if recordings and read_your_writes:
            await self.projector.wait_for(max(r.notification.id for r in recordings))
        return result

    async def command(self, step: Callable[[App], tuple[T, list[Recording]]],
                      answer: Callable[[T], R]) -> R:
        """A caller's command: run step on the application's deferring view (its writes are
        collected, not made), build the answer, and write both at once, so that a retry
        with the same idempotency key gets this answer and writes nothing.

        A key is claimed for the attempt's whole run: a retry arriving while an earlier
        attempt with its key still runs waits for that attempt, then finds its answer. An
        attempt commits only while its caller waits (`idempotency.Attempt`)."""
        key = idempotency.pending()
        attempt = idempotency.Attempt.of_call()

        def first_answer() -> R | None:
            assert key is not None
            earlier = self.app.find(idempotency.ClientRequest, key.aggregate_id)
            return None if earlier is None else earlier.answer_to(key)  # type: ignore[return-value]

        def run() -> tuple[R, list[Recording], list[Stored]]:
            if key is not None and (first := first_answer()) is not None:
                return first, [], []
            try:
                with self.app.writing():
                    changed: list[Aggregate] = []
                    result, _ = step(self.app.deferring(changed))
                    response = answer(result)
                    if key is not None:
                        changed.append(idempotency.ClientRequest.answered(key, response))
                    recordings = self.app.record(*changed, attempt=attempt)
                    # The views as committed, taken before the block lets others change them.
                    return response, recordings, stored(versioned(self.rows_for, changed))
            except LifelineError:
                # An earlier attempt may have committed between the look-up and the step's
                # reads (from another process): its answer, not a refusal of its own effect.
                if key is not None and (first := first_answer()) is not None:
                    return first, [], []
                raise

        def run_and_show() -> tuple[R, list[Recording], bool]:
            response, recordings, rows = retry_conflicts(run)
            return response, recordings, bool(recordings) and self._show(rows)

        if key is not None:
            # No await between finding the key free and taking it.
            while (earlier := self._attempts.get(key.aggregate_id)) is not None \
                    and not earlier.done():
                await self._wait_out(earlier)
        task = asyncio.ensure_future(asyncio.to_thread(run_and_show))
        if key is not None:
            claimed = key.aggregate_id
            self._attempts[claimed] = task
            task.add_done_callback(lambda t: self._attempts.pop(claimed)
                                   if self._attempts.get(claimed) is t else None)
        response, recordings, shown = await self._outcome(
            task, "the database stopped answering; the command may or may not have happened: "
                  "retry with the same idempotency-key", attempt)
        if recordings and shown:
            # Watches (the console's picture) see it from the projector: no lingering.
            self.projector.hurry(max(r.notification.id for r in recordings))
        elif recordings:
            # Callers read their own writes; but the command has committed, so a slow read
            # model must not turn its answer into a failure.
            try:
                await self.projector.wait_for(max(r.notification.id for r in recordings),
                                              READ_MODEL_WAIT_SECONDS)
            except TimeoutError:
                self._behind += 1
                if time.monotonic() >= self._behind_said + BEHIND_LOG_SECONDS:
                    log.warning("read model behind after %d committed command(s); answered "
                                "anyway", self._behind)
                    self._behind, self._behind_said = 0, time.monotonic()
        return response

    def _show(self, rows: list[Stored]) -> bool:
        """Write a command's own views at once, so that its caller reads its write without
        waiting for the projector (which writes them again, never going back a version);
        False if that failed (then the caller waits for the projector)."""
        try:
            write_through(self.app, self.views.table, rows)
        except Exception as error:
            log.debug("a command's views were left to the projector: %s", error)
            return False
        return True

    def now(self) -> datetime:
        return self.clock.now()

    async def read(self, fn: Callable[[], T]) -> T:
        return await self._outcome(asyncio.ensure_future(asyncio.to_thread(fn)),
                                   "the database stopped answering; retry shortly")

    async def _wait_out(self, earlier: asyncio.Future[Any]) -> None:
        """Wait until an earlier attempt with the same key has ended, however it ended (its
        outcome was its own caller's answer); UNAVAILABLE while it waits on a database
        known to be down."""
        try:
            await self._outcome(earlier, "an earlier attempt with this idempotency-key is "
                                         "still waiting for the database; retry with the "
                                         "same key")
        except Exception:
            if not earlier.done():
                raise

    async def _outcome(self, task: asyncio.Future[T], when_down: str,
                       attempt: idempotency.Attempt | None = None) -> T:
        """Wait for task (running off the event loop); while the database is known to be
        down, stop waiting for it (the library's own retries would hold the caller for a
        minute) and answer UNAVAILABLE. A slow but reachable database is waited for. A task
        left behind (UNAVAILABLE, or the caller gone) has its attempt abandoned, and its
        outcome retrieved, never logged as unretrieved."""
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=BACKEND_CHECK_SECONDS / 2)
                if done:
                    return task.result()
                if self.backend_down is not None:
                    raise Unavailable(when_down)
        finally:
            if not task.done() and attempt is not None:
                attempt.abandon()
            # Also when it ended just as its caller went away: nobody else takes its outcome.
            task.add_done_callback(_retrieved)

    # ---- life cycle ----

    def halt(self, exit_code: int = 0) -> None:
        self.exit_code = self.exit_code or exit_code
        self.halted.set()

    async def start(self) -> int:
        s = self.settings
        self.pool = await create_pool(s.database_url)
        self.views = Views(self.pool, s.service)
        await self.views.setup()
        for step in self._starting:
            await step()
        self.projector = Projector(self.app, self.views, self.rows_for, s.service,
                                   saved=self.live.publish)
        sec = s.security
        self.nc = await bus.connect(s.nats_url, f"lifeline-{s.service}", user=sec.nats_user,
                                    password=sec.nats_password, ca_file=sec.nats_ca)
        js = self.nc.jetstream()
        await bus.ensure_stream(js, s.service, s.stream_replicas)
        self.relay = bus.OutboxRelay(self.app, js, s.service, replicas=s.stream_replicas)
        self.inboxes = [bus.Inbox(self.app, js, **c) for c in self._consumers]
        for worker in self._workers():
            self._background(worker.run())
        for name, seconds, step in self._repeating:
            self._background(self._repeat(name, seconds, step))
        self._background(self._watch_backends())
        if self.leadership is not None:
            self._background(self._hold_leadership())
        tls = None
        if sec.tls_cert:
            tls = (Path(sec.tls_key).read_bytes(), Path(sec.tls_cert).read_bytes())
        self.port = await self.server.start(s.listen, tls, sec.health_listen)
        log.info("lifeline-%s serving on port %d", s.service, self.port)
        return self.port

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run work for the service's life; if it ever fails, say so at once (and stop
        the service: a supervisor restarts it whole), rather than when it is stopped."""
        task = asyncio.create_task(work)
        task.add_done_callback(self._ended)
        self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping.is_set():
            return
        error = task.exception()
        if error is not None:
            log.error("background task %s failed: %r; stopping", task.get_coro(), error)
            self.halt(exit_code=1)

    async def _repeat(self, name: str, seconds: float,
                      step: Callable[[], Awaitable[None]]) -> None:
        async def once() -> None:
            await step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

        await retry_forever(name, once, self._stopping)

    async def _watch_backends(self) -> None:
        """Health follows the backends: NOT_SERVING while PostgreSQL or NATS is unreachable.
        While PostgreSQL is, calls fail fast with UNAVAILABLE instead of waiting on it; while
        only NATS is, writes still go on (the outbox publishes them once it is back).
        PostgreSQL counts as down after two checks in a row fail: a stopped server refuses
        at once (down within a second), while one check starved of CPU on a busy machine
        does not fail the calls in flight."""
        failed = 0
        while not self._stopping.is_set():
            try:
                async with self.pool.acquire(timeout=BACKEND_CHECK_SECONDS) as conn:
                    await conn.fetchval("SELECT 1", timeout=BACKEND_CHECK_SECONDS)
                database, failed = None, 0
            except Exception as error:
                failed += 1
                database = (f"PostgreSQL is unreachable ({type(error).__name__})"
                            if failed >= 2 else self.backend_down)
            if database is None and self.backend_down is not None:
                # Back after an outage: serving again only once a write commits.
                database = await self._probe_writes()
            nats_ok = self.nc is not None and self.nc.is_connected
            serving = database is None and nats_ok
            if database != self.backend_down or serving != self.server.serving:
                log.warning("%s", database or ("NATS is unreachable" if not nats_ok
                                               else "backends reachable again: serving"))
            self.backend_down = database
            await self.server.set_serving(serving)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), BACKEND_CHECK_SECONDS)

    async def _probe_writes(self) -> str | None:
        """After an outage: a fresh pool for the application's writes (the old one's
        connections died with the server, and its reconnections back off further apart the
        longer the outage lasted), then None once a write through it commits, else why
        not."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.app.renew_pool)
        probe = asyncio.ensure_future(asyncio.to_thread(self.app.probe_write))
        done, _ = await asyncio.wait({probe}, timeout=BACKEND_CHECK_SECONDS * 4)
        if not done:
            probe.add_done_callback(_retrieved)
            return "PostgreSQL takes no writes yet (timeout)"
        error = probe.exception()
        return None if error is None else f"PostgreSQL takes no writes yet ({type(error).__name__})"

    async def _hold_leadership(self) -> None:
        assert self.leadership is not None
        try:
            await self.leadership.hold(self._stopping)
        except LostLeadership as lost:
            # Stop at once: the replica that took the lock is starting the same work.
            log.error("%s; stopping so that a supervisor restarts this one as a standby", lost)
            self.halt(exit_code=3)

    def _workers(self) -> list[LogFollower | bus.Inbox]:
        return [self.projector, self.relay, *self.inboxes]

    async def stop(self) -> None:
        # Open watches would hold the server's grace period: end them first, saying why.
        self.live.close_all("the service is stopping; watch again in a moment")
        await self.server.stop()
        self._stopping.set()
        for worker in self._workers():
            worker.stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.relay.flush()
        if self.nc is not None:
            # Close rather than drain: an unacknowledged message is simply redelivered.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        await self.pool.close()
        if self.leadership is not None:
            await self.leadership.release()
        self.app.close()


async def stand_by(leadership: Leadership, health_listen: str,
                   halted: asyncio.Event) -> bool:
    """Wait until this replica leads (True) or is told to stop (False). Meanwhile only the
    health port is open, answering SERVING: ready to take over."""
    probe = await health_probe(health_listen, health_aio.HealthServicer()) \
        if health_listen else None
    try:
        if await leadership.acquire(halted):
            return True
        await leadership.release()
        return False
    finally:
        if probe is not None:
            await probe.stop(0)  # the service's own probe takes the port


def serve_forever(service: str, build: Callable[[Settings], Runtime]) -> None:
    """Entry point of `lifeline-<service> serve`: run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(service)
    if settings.nice:
        os.nice(settings.nice)  # a service off the dispatch path yields the cores to it
    setup_tracing(service, settings.otlp_endpoint)

    async def main() -> int:
        halted = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, halted.set)
        leadership = Leadership(settings.database_url, service)
        if not await stand_by(leadership, settings.security.health_listen, halted):
            return 0
        # Built only once leading: whatever a service keeps in memory (monitor's engine,
        # resources' fleet, caches) is read from the store as it is at the takeover.
        runtime = build(settings)
        runtime.halted, runtime.leadership = halted, leadership
        await runtime.start()
        heap.settle()  # after the warm caches: no collector pauses in the answers
        await halted.wait()
        log.info("stopping")
        await runtime.stop()
        return runtime.exit_code

    raise SystemExit(asyncio.run(main()))
