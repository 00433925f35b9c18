"""The event store's recorder: the `eventsourcing` PostgreSQL process recorder, writing a
command or a consumer's effects in one round trip and concurrent writes in one transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresProcessRecorder
from psycopg import sql

from lifeline.errors import Abandoned
from lifeline.groupcommit import GroupCommit, Separately
from lifeline.idempotency import Attempt


@dataclass
class Taking:
    """A consumer's write of one upstream event, handed by its inbox down to `record`: the
    event's tracking row (`row`); the rows of earlier events it only tracks (it does not
    react to them), written in the same transaction rather than one transaction each
    (`written` says whether a write took them); `first`, when the inbox took the event as
    the first of its aggregate without asking the store, so the write refuses it
    (`NotNext`) if a later version was taken before; and `riders`, aggregates a parked
    message applied again writes in place of its row (see `ServiceApplication.record`)."""

    row: Tracking
    also: Sequence[Tracking] = ()
    first: bool = False
    riders: Callable[[], Sequence[Aggregate]] | None = None
    written: bool = False


class NotNext(Exception):
    """A consumer's write of an upstream event whose aggregate already has a later version
    taken (a straggler after a gap was parked): nothing was written."""


class AlreadyTaken(Exception):
    """A consumer's write of an upstream event it took before (its tracking row's key):
    nothing was written; not a conflict to retry."""


@dataclass
class Write:
    """One `insert_events` call: the events, the consumer's tracking row and what its
    taking adds to it, and the caller's attempt (commands)."""
    events: Sequence[StoredEvent]
    tracking: Tracking | None
    taking: Taking | None
    attempt: Attempt | None

    @property
    def size(self) -> int:
        return sum(len(e.state) for e in self.events)


class StoreRecorder(PostgresProcessRecorder):
    """The library's recorder, writing without psycopg's pipeline mode, in one round trip
    (three for a large write), and committing concurrent writes together.

    In pipeline mode a statement larger than the socket's send buffer (a 1 MiB field, a
    long imported history) deadlocks: the client waits for results while the server still
    waits for the rest of the statement, and the events table's lock is held meanwhile, so
    every later write of the service times out. Without it, each statement is a round trip,
    and the library's write took eight (BEGIN, tracking row, tracked-only rows, lock
    timeout, table lock, NOTIFY, events, COMMIT), each a wait for a core on a busy machine.
    Here a write of up to INLINE_MAX_BYTES of events is one simple-protocol query (BEGIN,
    tracking rows, lock timeout, lock, the events as literals, COMMIT; every value quoted by
    psycopg); a larger one sends the small statements as one query, then the events with
    their parameters, then COMMIT. Writes that arrive while another commits are committed
    together (`lifeline.groupcommit`): one transaction and one table lock for the group.
    No retry loop either: an outage is answered at once (UNAVAILABLE), and the caller
    retries with its idempotency key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_commit: GroupCommit[Write, Sequence[int]] = GroupCommit(
            self._write_alone, self._write_together,
            joins=lambda w: w.size <= INLINE_MAX_BYTES)

    def _tracking_rows(self, rows: Sequence[Tracking], if_new: bool) -> sql.Composed:
        values = sql.SQL(", ").join(
            sql.SQL("({}, {})").format(sql.Literal(t.application_name),
                                       sql.Literal(t.notification_id)) for t in rows)
        return sql.SQL("INSERT INTO {}.{} VALUES {}{}").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.tracking_table_name),
            values, sql.SQL(" ON CONFLICT DO NOTHING" if if_new else ""))

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any
                      ) -> Sequence[int] | None:
        write = Write(stored_events, kwargs.get("tracking"), kwargs.get("taking"),
                      kwargs.get("attempt"))
        ids = self.group_commit.commit(write)
        if write.tracking is not None and write.taking is not None and write.taking.also:
            write.taking.written = True
        return ids

    def _before_events(self, write: Write) -> list[sql.Composable]:
        """A write's statements before its events: the tracking guard and rows."""
        tracking, taking = write.tracking, write.taking
        if tracking is None:
            return []
        statements: list[sql.Composable] = []
        if taking is not None and taking.first:
            # Fails (division by zero) if a later version of the aggregate was taken.
            statements.append(sql.SQL(
                "SELECT 1 / (NOT EXISTS (SELECT 1 FROM {}.{} WHERE application_name = {} "
                "AND notification_id > {}))::int").format(
                sql.Identifier(self.datastore.schema),
                sql.Identifier(self.tracking_table_name),
                sql.Literal(tracking.application_name),
                sql.Literal(tracking.notification_id)))
        statements.append(self._tracking_rows([tracking], if_new=False))
        if taking is not None and taking.also:
            # Another instance may have taken some already: theirs stand.
            statements.append(self._tracking_rows(taking.also, if_new=True))
        return statements

    def _lock(self) -> list[sql.Composable]:
        locks: list[sql.Composable] = [s for s in self.lock_table_statements
                                       if isinstance(s, sql.Composable)]
        assert len(locks) == len(self.lock_table_statements), "the table lock is composed"
        # No NOTIFY: nothing here LISTENs (followers are woken in process, and poll for
        # other processes' writes). It would also take PostgreSQL's cluster-wide
        # notify-queue lock at every commit.
        return locks

    @staticmethod
    def _timeout(seconds: float | None) -> list[sql.Composable]:
        # Only while the caller waits (the pool may have held this thread through an
        # outage), and PostgreSQL cancels the transaction once it no longer does.
        if seconds is None:
            return []
        return [sql.SQL("SET LOCAL statement_timeout = {}").format(
            sql.Literal(max(1, int(seconds * 1000))))]

    def _write_alone(self, write: Write) -> Sequence[int]:
        stored_events, tracking, attempt = write.events, write.tracking, write.attempt
        left = attempt.remaining() if attempt is not None else None
        first: list[sql.Composable] = [sql.SQL("BEGIN"), *self._timeout(left),
                                       *self._before_events(write)]
        if stored_events:
            first.extend(self._lock())
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            self._check_has_multi_row_tracking_table(curs)
            try:
                ids: Sequence[int] = []
                if write.size <= INLINE_MAX_BYTES:
                    # The whole write as one simple query, COMMIT included: one round trip.
                    if stored_events:
                        first.append(self._insert_inline(stored_events))
                    curs.execute(sql.SQL("; ").join([*first, sql.SQL("COMMIT")]),
                                 prepare=False)
                    ids = _returned_ids(curs, stored_events) if stored_events else []
                else:
                    curs.execute(sql.SQL("; ").join(first), prepare=False)  # a simple query
                    if stored_events:
                        PostgresAggregateRecorder._insert_stored_events(self, curs,
                                                                        stored_events)
                        ids = self._fetch_ids_after_insert_events(curs, stored_events) or []
                    curs.execute("COMMIT", prepare=False)
            except psycopg.errors.QueryCanceled:
                _roll_back(curs)
                if attempt is None:
                    raise
                attempt.abandon()
                raise Abandoned("the call's deadline passed during its write; nothing was "
                                "written") from None
            except psycopg.errors.DivisionByZero:
                _roll_back(curs)
                assert tracking is not None
                raise NotNext(f"{tracking.application_name} version {tracking.notification_id}"
                              " is not the next: a later version was taken") from None
            except BaseException:
                _roll_back(curs)
                raise
        return ids

    def _write_together(self, writes: Sequence[Write]) -> list[Sequence[int]]:
        """Several writes in one transaction, or `Separately` with nothing written."""
        try:
            remaining = [left for w in writes if w.attempt is not None
                         and (left := w.attempt.remaining()) is not None]
        except Abandoned:
            raise Separately from None  # that one fails alone
        events = [e for w in writes for e in w.events]
        statements: list[sql.Composable] = [
            sql.SQL("BEGIN"), *self._timeout(min(remaining, default=None)),
            *(s for w in writes for s in self._before_events(w))]
        if events:
            statements.extend([*self._lock(), self._insert_inline(events)])
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            self._check_has_multi_row_tracking_table(curs)
            try:
                curs.execute(sql.SQL("; ").join([*statements, sql.SQL("COMMIT")]),
                             prepare=False)
                ids = _returned_ids(curs, events) if events else []
            except psycopg.Error as error:
                _roll_back(curs)
                if error.sqlstate is not None:  # the server refused it: nothing committed
                    raise Separately from error
                raise
            except BaseException:
                _roll_back(curs)
                raise
        split: list[Sequence[int]] = []
        at = 0
        for write in writes:
            split.append(ids[at:at + len(write.events)])
            at += len(write.events)
        return split

    def _insert_inline(self, stored_events: Sequence[StoredEvent]) -> sql.Composed:
        """The events as an INSERT of literal values (quoted by psycopg), for a simple query."""
        rows = sql.SQL(", ").join(
            sql.SQL("({}, {}, {}, {})").format(
                sql.Literal(e.originator_id), sql.Literal(e.originator_version),
                sql.Literal(e.topic), sql.Literal(e.state)) for e in stored_events)
        return sql.SQL("INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
                       "VALUES {} RETURNING originator_id, originator_version, "
                       "notification_id").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.events_table_name),
            rows)


def _roll_back(curs: Any) -> None:
    with contextlib.suppress(Exception):
        curs.execute("ROLLBACK", prepare=False)


#: A write whose events' stored bytes stay under this goes as one simple query, its events
#: as literals (hex for their bytes), COMMIT included; a larger one as three round trips.
INLINE_MAX_BYTES = 64 * 1024


def _returned_ids(curs: Any, events: Sequence[StoredEvent]) -> list[int]:
    """The notification ids the INSERT of a multi-statement simple query returned, in the
    order of `events`."""
    while not (curs.description and curs.description[0].name == "originator_id"):
        if not curs.nextset():
            raise RuntimeError("the write's INSERT returned no notification ids")
    ids = {(str(row["originator_id"]), row["originator_version"]): row["notification_id"]
           for row in curs.fetchall()}
    return [ids[(str(e.originator_id), e.originator_version)] for e in events]


