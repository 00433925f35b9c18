"""Read models for queries, kept with asyncpg and rebuildable from the events at any time.

Each service has one table `<service>.view`: a row per thing a caller can list (incident,
unit, sensor, warning) holding its current protobuf view and a few indexed columns. The
projector follows the notification log; a mutating RPC waits for it before answering, so
a caller always reads its own writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Notification
from google.protobuf.message import Message

from lifeline.errors import InvalidArgument, NotFound
from lifeline.events import ProtoAggregate
from lifeline.follow import LogFollower
from lifeline.store import ServiceApplication

M = TypeVar("M", bound=Message)
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_OFFSET = 10**9


@dataclass(frozen=True)
class ViewRow:
    kind: str  # incident, unit, sensor, warning
    key: str  # the id a caller uses
    doc: Message
    status: str = ""
    category: str = ""
    lat: float | None = None
    lon: float | None = None
    #: The field time its next deadline falls due (None: none pending), and how far the
    #: aggregate's field time runs ahead of the service clock (see lifeline.clock).
    due: datetime | None = None
    field_offset: timedelta = timedelta(0)


RowsFor = Callable[[ProtoAggregate], Sequence[ViewRow]]


async def create_pool(database_url: str) -> asyncpg.Pool:
    # Bounded waits: an unreachable database is an error in seconds, not a hang.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5, timeout=2,
                                     command_timeout=10)
    assert pool is not None
    return pool


class Views:
    def __init__(self, pool: asyncpg.Pool, service: str) -> None:
        # In the service's own schema, beside its event store.
        self.pool, self.table, self.positions = pool, f"{service}.view", f"{service}.view_position"

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    kind text NOT NULL, key text NOT NULL, status text NOT NULL,
                    category text NOT NULL, lat float8, lon float8, doc bytea NOT NULL,
                    PRIMARY KEY (kind, key));
                CREATE INDEX IF NOT EXISTS view_by_status ON {self.table} (kind, status, category);
                ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS due timestamptz,
                    ADD COLUMN IF NOT EXISTS field_offset interval;
                CREATE INDEX IF NOT EXISTS view_due ON {self.table} (kind, due)
                    WHERE due IS NOT NULL;
                CREATE TABLE IF NOT EXISTS {self.positions} (
                    name text PRIMARY KEY, position bigint NOT NULL);""")

    async def position(self) -> int:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                f"SELECT position FROM {self.positions} WHERE name = 'projector'")
        return int(value or 0)

    async def save(self, rows: Sequence[ViewRow], position: int) -> None:
        """Write a batch of views in one statement (a thing written twice in the batch: its
        last row), and the position they are as of."""
        latest = {(r.kind, r.key): r for r in rows}.values()
        columns = list(zip(*((r.kind, r.key, r.status, r.category, r.lat, r.lon,
                              r.doc.SerializeToString(), r.due, r.field_offset)
                             for r in latest), strict=True)) or [()] * 9
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"""INSERT INTO {self.table} (kind, key, status, category, lat, lon, doc, due,
                                              field_offset)
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                         $5::float8[], $6::float8[], $7::bytea[],
                                         $8::timestamptz[], $9::interval[])
                    ON CONFLICT (kind, key) DO UPDATE SET status = EXCLUDED.status,
                    category = EXCLUDED.category, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
                    doc = EXCLUDED.doc, due = EXCLUDED.due,
                    field_offset = EXCLUDED.field_offset""", *map(list, columns))
            await conn.execute(
                f"""INSERT INTO {self.positions} VALUES ('projector', $1)
                    ON CONFLICT (name) DO UPDATE SET position = GREATEST(
                    {self.positions}.position, $1)""", position)

    async def get(self, kind: str, key: str, message_type: type[M]) -> M | None:
        async with self.pool.acquire() as conn:
            doc = await conn.fetchval(f"SELECT doc FROM {self.table} WHERE kind=$1 AND key=$2",
                                      kind, key)
        return None if doc is None else message_type.FromString(doc)

    async def require(self, kind: str, key: str, message_type: type[M]) -> M:
        """The view of one thing, or NOT_FOUND naming it."""
        if not key.strip():
            raise InvalidArgument("id", "is required")
        found = await self.get(kind, key, message_type)
        if found is None:
            raise NotFound(kind, key)
        return found

    async def page(self, kind: str, message_type: type[M], *, page_size: int = 0,
                   page_token: str = "", status: str = "", category: str = "",
                   statuses: Sequence[str] = ()) -> tuple[list[M], str]:
        """One page of views, oldest key first; filters are optional."""
        if page_size < 0:
            raise InvalidArgument("page.page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        try:
            offset = int(page_token or 0)
        except ValueError:
            offset = -1
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidArgument("page.page_token", "not a token this server gave")
        wanted = list(statuses) or ([status] if status else [])
        args: list[Any] = [kind, wanted, category, size + 1, offset]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT doc FROM {self.table} WHERE kind = $1
                    AND (cardinality($2::text[]) = 0 OR status = ANY($2::text[]))
                    AND ($3 = '' OR category = $3)
                    ORDER BY key LIMIT $4 OFFSET $5""", *args)
        items = [message_type.FromString(r["doc"]) for r in rows[:size]]
        return items, (str(offset + size) if len(rows) > size else "")

    async def due(self, kind: str, message_type: type[M], *, service_now: datetime,
                  field_now: datetime | None = None) -> list[M]:
        """Views whose next deadline has fallen due: by field time `field_now` when given
        (drills), else by the service clock run on by each row's field-time offset."""
        when, moment = (("due", field_now) if field_now is not None
                        else ("due - field_offset", service_now))
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT doc FROM {self.table}
                    WHERE kind = $1 AND due IS NOT NULL AND {when} <= $2""", kind, moment)
        return [message_type.FromString(r["doc"]) for r in rows]

    async def fill_due(self, kind: str, message_type: type[M],
                       due_of: Callable[[M], tuple[datetime | None, timedelta]]) -> int:
        """Compute `due` for rows written before it was kept (an upgrade); how many."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT key, doc FROM {self.table} WHERE kind = $1 AND due IS NULL", kind)
            updates = [(r["key"], *due_of(message_type.FromString(r["doc"])), kind)
                       for r in rows]
            updates = [u for u in updates if u[1] is not None]
            await conn.executemany(
                f"""UPDATE {self.table} SET due = $2, field_offset = $3
                    WHERE kind = $4 AND key = $1""", updates)
        return len(updates)

    async def snapshot(self, kind: str, message_type: type[M],
                       statuses: Sequence[str] | None = None) -> tuple[list[M], int]:
        """Every view of a kind (in these statuses, if given), and the projector's position
        they are as of (read together: a live watch sends what came after it)."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            position = await conn.fetchval(
                f"SELECT position FROM {self.positions} WHERE name = 'projector'")
            rows = await conn.fetch(
                f"""SELECT doc FROM {self.table} WHERE kind = $1
                    AND ($2::text[] IS NULL OR status = ANY($2::text[])) ORDER BY key""",
                kind, None if statuses is None else list(statuses))
        return [message_type.FromString(r["doc"]) for r in rows], int(position or 0)

    async def every(self, kind: str, message_type: type[M]) -> list[M]:
        """Every view of a kind (to warm a service's in-memory cache when it starts)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT doc FROM {self.table} WHERE kind = $1", kind)
        return [message_type.FromString(r["doc"]) for r in rows]


#: How long the projector lets a batch nobody waits for gather more (see `Projector`).
PROJECTOR_LINGER_SECONDS = 0.1


class Projector(LogFollower):
    """Keeps a service's view table up to date with its event store."""

    def __init__(self, app: ServiceApplication, views: Views, rows_for: RowsFor,
                 service: str, saved: Callable[[Sequence[ViewRow], int], None] | None = None
                 ) -> None:
        super().__init__(app, f"{service} projector")
        self.views, self.rows_for, self.saved = views, rows_for, saved
        # What nobody waits for (a consumer's write) is projected a little later, with
        # whatever else was committed by then: the view writes stay off the moment the
        # next service is working on the event, and several writes cost one save.
        self.linger = PROJECTOR_LINGER_SECONDS

    async def load_position(self) -> int:
        return await self.views.position()

    async def handle(self, notifications: Sequence[Notification]) -> None:
        ids = list(dict.fromkeys(n.originator_id for n in notifications))
        rows = await asyncio.to_thread(self._rows, ids)
        await self.views.save(rows, notifications[-1].id)
        if self.saved is not None:
            self.saved(rows, notifications[-1].id)  # live watches (lifeline.live)

    def _rows(self, ids: list[Any]) -> list[ViewRow]:
        """The views of these aggregates as they are now, read in one round trip."""
        found = self.app.find_many([UUID(str(i)) for i in ids])
        return [row for aggregate in found.values()
                if isinstance(aggregate, ProtoAggregate)  # not the internal request records
                for row in self.rows_for(aggregate)]
