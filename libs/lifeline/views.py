"""Read models for queries, kept with asyncpg and rebuildable from the events at any time.

Each service has one table `<service>.view`: a row per thing a caller can list (incident,
unit, sensor, warning) holding its current protobuf view and a few indexed columns. The
projector follows the notification log; a mutating RPC waits for it before answering, so
a caller always reads its own writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresProcessRecorder
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


#: A view row as written: its columns, the doc serialized, and the version of the aggregate
#: it shows (a row is never replaced by one showing an older version).
Stored = tuple[str, str, str, str, float | None, float | None, bytes, datetime | None,
               timedelta, int]


def versioned(rows_for: RowsFor, aggregates: Iterable[object]) -> list[tuple[ViewRow, int]]:
    """The view rows of these aggregates as they are now, each with its aggregate's version
    (the internal request records, which are not ProtoAggregates, have none)."""
    return [(row, a.version) for a in aggregates if isinstance(a, ProtoAggregate)
            for row in rows_for(a)]


def stored(rows: Iterable[tuple[ViewRow, int]]) -> list[Stored]:
    return [(r.kind, r.key, r.status, r.category, r.lat, r.lon, r.doc.SerializeToString(),
             r.due, r.field_offset, version) for r, version in rows]


def upsert(table: str, parameter: Callable[[int], str]) -> str:
    """One statement writing a batch of `Stored` rows (as ten arrays, one per column);
    `parameter(n)` spells the n-th placeholder ($n for asyncpg, %s for psycopg)."""
    types = ("text", "text", "text", "text", "float8", "float8", "bytea", "timestamptz",
             "interval", "bigint")
    arrays = ", ".join(f"{parameter(n)}::{t}[]" for n, t in enumerate(types, 1))
    return f"""INSERT INTO {table} (kind, key, status, category, lat, lon, doc, due,
                                    field_offset, version)
        SELECT * FROM unnest({arrays})
        ON CONFLICT (kind, key) DO UPDATE SET status = EXCLUDED.status,
        category = EXCLUDED.category, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
        doc = EXCLUDED.doc, due = EXCLUDED.due, field_offset = EXCLUDED.field_offset,
        version = EXCLUDED.version
        WHERE {table}.version IS NULL OR {table}.version <= EXCLUDED.version"""


def columns(rows: Sequence[Stored]) -> list[list[Any]]:
    """Rows as the ten arrays `upsert` takes (a thing twice in the batch: its last row)."""
    latest = {(r[0], r[1]): r for r in rows}.values()
    return [list(c) for c in zip(*latest, strict=True)] or [[] for _ in range(10)]


RowsFor = Callable[[ProtoAggregate], Sequence[ViewRow]]


async def create_pool(database_url: str) -> asyncpg.Pool:
    # Bounded waits: an unreachable database is an error in seconds, not a hang.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5, timeout=2,
                                     command_timeout=10)
    assert pool is not None
    return pool


def write_through(app: ServiceApplication, table: str, rows: Sequence[Stored]) -> None:
    """Write these view rows now, from a writer's thread, on the application's own
    connections (what `Views.save` does for the projector, without its position)."""
    if not rows:
        return
    recorder = app.process_recorder
    assert isinstance(recorder, PostgresProcessRecorder)
    with recorder.datastore.get_connection() as conn:
        conn.execute(upsert(table, lambda _: "%s"), columns(rows), prepare=False)


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
                ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS version bigint;
                CREATE INDEX IF NOT EXISTS view_due ON {self.table} (kind, due)
                    WHERE due IS NOT NULL;
                CREATE TABLE IF NOT EXISTS {self.positions} (
                    name text PRIMARY KEY, position bigint NOT NULL);""")

    async def position(self) -> int:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                f"SELECT position FROM {self.positions} WHERE name = 'projector'")
        return int(value or 0)

    async def save(self, rows: Sequence[Stored], position: int) -> None:
        """Write a batch of views in one statement, and the position they are as of."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(upsert(self.table, lambda n: f"${n}"), *columns(rows))
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
        await self.views.save(stored(rows), notifications[-1].id)
        if self.saved is not None:
            self.saved([row for row, _ in rows], notifications[-1].id)  # live watches

    def _rows(self, ids: list[Any]) -> list[tuple[ViewRow, int]]:
        """The views of these aggregates as they are now, read in one round trip."""
        return versioned(self.rows_for,
                         self.app.find_many([UUID(str(i)) for i in ids]).values())
