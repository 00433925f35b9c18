"""Each service is an `eventsourcing` Application kept in PostgreSQL, in tables of its own.

The application's recorder is a process recorder, so whatever a consumer does with a NATS
message is written in the same transaction as the message's event identity (tracking):
a redelivered, republished or replayed message changes nothing.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    ProcessRecorder,
    Recording,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresProcessRecorder
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from lifeline import settings as environment
from lifeline.errors import Conflict, NotFound
from lifeline.events import fold, keep_trace_context
from lifeline.idempotency import Attempt
from lifeline.recorder import (  # noqa: F401 - NotNext and Taking are the store's to name too
    AlreadyTaken,
    NotNext,
    StoreRecorder,
    Taking,
)
from lifeline.repository import CopyingRepository
from lifeline.tracing import current_context

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


def ensure_schema(database_url: str, schema: str) -> None:
    """Each service keeps its tables in a schema of its own (its own database in production)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def eventsourcing_env(database_url: str, schema: str) -> dict[str, str]:
    """Translate DATABASE_URL, and the POSTGRES_* settings Lifeline declares, into the
    library's settings."""
    info = conninfo_to_dict(database_url)
    pool = environment.load()
    return {
        "POSTGRES_SCHEMA": schema,
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname", "lifeline")),
        "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(info.get("port", "5432")),
        "POSTGRES_USER": str(info.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(info.get("password", "")),
        "POSTGRES_POOL_SIZE": str(pool.postgres_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool.postgres_max_overflow),
        # Writers never wait long on the events table's lock, nor on an unreachable server.
        "POSTGRES_LOCK_TIMEOUT": str(pool.postgres_lock_timeout),
        "POSTGRES_CONNECT_TIMEOUT": str(pool.postgres_connect_timeout),
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT":
            str(pool.postgres_idle_in_transaction_session_timeout),
        # No ping before every use of a pooled connection: it doubled the round trips of
        # every read and write. The runtime renews the pool when the database comes back
        # after an outage (`renew_pool`).
        # Consumers track a row per upstream event they took, keyed by the event's identity
        # (application_name "<upstream>/<aggregate id>", notification_id its version): the
        # highest version per aggregate orders them, membership recognises a repeat, and a
        # straggler older than the highest is still told apart from a repeat.
        "SINGLE_ROW_TRACKING": "n",
        "PROCESS_RECORDER_TOPIC": "lifeline.recorder:StoreRecorder",
        # Events as binary protobuf (rows written as JSON before still load).
        "MAPPER_TOPIC": "lifeline.encoding:ProtoMapper",
        "CREATE_TABLE": "y",
        "AGGREGATE_CACHE_MAXSIZE": "1000",
    }


class ServiceApplication(Application):
    """Base of the four services' applications."""

    #: A command's view of the application collects its writes here (`deferring`).
    deferred: list[Aggregate] | None = None

    def construct_repository(self) -> CopyingRepository:
        return CopyingRepository.taking_over(super().construct_repository())

    def __init__(self, database_url: str, env: dict[str, Any] | None = None) -> None:
        ensure_schema(database_url, self.name)
        keep_trace_context(current_context)  # for the relay to continue the trace
        super().__init__({**eventsourcing_env(database_url, self.name), **(env or {})})
        self._listeners: list[Callable[[Sequence[Notification]], None]] = []
        self._listeners_lock = threading.Lock()

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        assert isinstance(self.recorder, ProcessRecorder)
        return self.recorder

    def probe_write(self) -> None:
        """Take a connection from the writers' pool and commit a transaction that holds a
        transaction id: what every write needs (a server in recovery or read-only fails)."""
        recorder = self.process_recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        with recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT pg_current_xact_id()")

    def renew_pool(self) -> None:
        """Replace the writers' pool by a fresh one of the same settings (the library's
        factory makes it from the application's environment)."""
        recorder = self.process_recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        datastore = recorder.datastore
        fresh: Any = type(self.factory)(self.factory.env)
        old, datastore.pool = datastore.pool, fresh.datastore.pool
        old.close(timeout=0)

    def on_recorded(self, listener: Callable[[Sequence[Notification]], None]) -> None:
        """Call listener(the notifications written) after every write that wrote events
        (it wakes the relay and the projector, in the writer's thread)."""
        with self._listeners_lock:
            self._listeners.append(listener)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Any]:
        """One command's decide, write and commit as one block (`Runtime.command` runs each
        attempt in one): an application keeping state in memory holds it here (monitor's
        alarm engine); the others need nothing."""
        yield None

    def deferring(self, into: list[Aggregate]) -> Self:
        """This application as one caller's command sees it: its `record` adds the
        aggregates to `into` instead of writing them, so the runtime writes them at once
        with the command's answer (`Runtime.command` hands the view to the step)."""
        view = copy.copy(self)
        view.deferred = into
        return view

    def close(self) -> None:
        if self.deferred is None:  # not a command's view: it shares the application's pools
            super().close()

    def record(self, *aggregates: Aggregate | None, taking: Taking | None = None,
               attempt: Attempt | None = None) -> list[Recording]:
        """Write the aggregates' new events, and a consumer's tracking of what it is taking,
        in one transaction; a caller's command only while its `attempt` stands. A parked
        message applied again (a taking with riders) was tracked when it was parked: the
        parking's own `retried` event, which riders() builds afresh on each attempt, is
        written in place of its tracking row and makes the retry happen once."""
        tracking = None if taking is None else taking.row
        if taking is not None and taking.riders is not None:
            aggregates, tracking, taking = (*aggregates, *taking.riders()), None, None
        if self.deferred is not None:
            assert tracking is None, "a consumer's write is never deferred"
            self.deferred.extend(a for a in aggregates if a is not None)
            return []
        processing = ProcessingEvent[UUID](tracking)
        processing.collect_events(*aggregates, **({"attempt": attempt} if attempt else {}),
                                  **({"taking": taking} if taking else {}))
        try:
            recordings = self._record(processing)
        except IntegrityError as error:
            if tracking is not None and self._on_tracking(error):
                raise AlreadyTaken(f"{tracking.application_name} version "
                                   f"{tracking.notification_id} was taken before") from error
            raise Conflict("changed concurrently by another request; retry") from error
        self._take_snapshots(processing)
        if recordings:
            notifications = [r.notification for r in recordings]
            with self._listeners_lock:
                listeners = list(self._listeners)
            for listener in listeners:
                listener(notifications)
        return recordings

    def _on_tracking(self, error: IntegrityError) -> bool:
        """Whether a write failed on the tracking table (an upstream event taken before),
        not on the events table (another writer of the aggregate)."""
        diag = getattr(error.__cause__, "diag", None)
        table = getattr(self.process_recorder, "tracking_table_name", None)
        return diag is not None and table is not None and diag.table_name == table

    def track(self, rows: Sequence[Tracking]) -> None:
        """Write tracking rows alone, in one statement (those already there stand)."""
        if not rows:
            return
        recorder = self.process_recorder
        assert isinstance(recorder, StoreRecorder)
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(recorder._tracking_rows(rows, if_new=True), prepare=False)

    def is_processed(self, tracking: Tracking) -> bool:
        """Was exactly this upstream position processed? Membership, not the library's
        `has_tracking_id` (highest position seen), because JetStream may redeliver an older
        message after a newer one committed, and that older one still needs processing."""
        recorder = self.process_recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        query = sql.SQL("SELECT 1 FROM {}.{} WHERE application_name = %s AND notification_id = %s"
                        ).format(sql.Identifier(recorder.datastore.schema),
                                 sql.Identifier(recorder.tracking_table_name))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, (tracking.application_name, tracking.notification_id))
            return cursor.fetchone() is not None

    def inbox_position(self, key: str, version: int) -> tuple[int, bool]:
        """For one upstream aggregate (key = "<upstream>/<aggregate id>"): the highest
        version this consumer has taken (applied, ignored or parked), and whether it took
        exactly this version. The tracking table holds a row per version taken
        (application_name = key, notification_id = version; multi-row tracking, whose
        primary key makes a second writer of the same version fail), so the answer is
        the broker's business no more: a republish or a recreated stream asks the same."""
        last, seen, _ = self.inbox_state(key, version)
        return last, seen

    def inbox_state(self, key: str, version: int, parking: UUID | None = None
                    ) -> tuple[int, bool, bool]:
        """`inbox_position`, and in the same round trip whether the aggregate `parking`
        (the consumer's parking for this upstream aggregate) was ever started."""
        recorder = self.process_recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        query = sql.SQL("SELECT max(notification_id), bool_or(notification_id = %s), "
                        "EXISTS (SELECT 1 FROM {}.{} WHERE originator_id = %s) "
                        "FROM {}.{} WHERE application_name = %s"
                        ).format(sql.Identifier(recorder.datastore.schema),
                                 sql.Identifier(recorder.events_table_name),
                                 sql.Identifier(recorder.datastore.schema),
                                 sql.Identifier(recorder.tracking_table_name))
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, (version, parking, key))
            row: Any = cursor.fetchone()
        values = (list(row.values()) if isinstance(row, dict)
                  else list(row or (None, None, None)))
        return int(values[0] or 0), bool(values[1]), bool(values[2])

    def find_many(self, ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
        """Several aggregates as they are in the store now, in one round trip (the
        repository takes one per aggregate, cached or not): a cached one is copied and
        brought up to date with the events after it, any other folded from its first
        event. An id with no events is left out."""
        recorder = self.process_recorder
        assert isinstance(recorder, PostgresProcessRecorder)
        repository, known = self.repository, {}
        assert isinstance(repository, CopyingRepository)
        for aggregate_id in dict.fromkeys(ids):
            if repository.cache is None:
                break
            try:
                cached = repository.cache.get(aggregate_id)
            except KeyError:
                continue
            # One moment's version and state; the rows read next follow on from it.
            known[aggregate_id] = repository.copied(aggregate_id, cached)
        after = [known[i].version if i in known else 0 for i in dict.fromkeys(ids)]
        statement = sql.SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {}.{} e "
            "JOIN unnest(%s::uuid[], %s::int[]) AS w(id, after) "
            "ON e.originator_id = w.id AND e.originator_version > w.after "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(sql.Identifier(recorder.datastore.schema),
                 sql.Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (list(dict.fromkeys(ids)), after))
            rows: list[Any] = curs.fetchall()
        found: dict[UUID, Any] = dict(known)
        to_event = self.mapper.to_domain_event
        for aggregate_id, group in itertools.groupby(rows, key=lambda r: r["originator_id"]):
            aggregate = fold(found.get(aggregate_id), [to_event(StoredEvent(
                originator_id=r["originator_id"], originator_version=r["originator_version"],
                topic=r["topic"], state=bytes(r["state"]))) for r in group])
            if aggregate is not None:
                found[aggregate_id] = aggregate
        return found

    def load(self, cls: type[A], aggregate_id: UUID, what: str, label: str) -> A:
        try:
            aggregate: Any = self.repository.get(aggregate_id, projector_func=fold)
        except AggregateNotFoundError:
            raise NotFound(what, label) from None
        if not isinstance(aggregate, cls):
            raise NotFound(what, label)
        return aggregate

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate: Any = self.repository.get(aggregate_id, projector_func=fold)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None


def retry_conflicts(attempt: Callable[[], T], attempts: int = 5) -> T:
    """Run a read-decide-write step again when another writer got there first."""
    for _ in range(attempts - 1):
        try:
            return attempt()
        except Conflict:
            continue
    return attempt()
