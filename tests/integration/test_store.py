"""The event store against a real PostgreSQL: a write far larger than a socket buffer, alone
or as many events at once, commits and leaves the table free for the next writer (psycopg's
pipeline mode deadlocked on such writes, holding the table's lock; how fast they commit is
bench/responsiveness.py's, the limit here only catches that hang);
a consumer's write in its three round trips stays all or nothing; several aggregates load
in one query; writes sent while another commits share one transaction, and one refused
among them fails alone."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from lifeline.common.v1 import common_pb2
from lifeline.errors import Abandoned
from lifeline.events import Cause
from lifeline.idempotency import Attempt
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import AlreadyTaken, NotNext, ServiceApplication, StoreRecorder, Taking
from lifeline_monitor.application import MonitorApp
from lifeline_monitor.domain import Sensor

pytestmark = pytest.mark.integration
NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
#: Seconds after which a write is taken to hang (ten times a slow machine's commit).
HANG = 10.0


@pytest.fixture
def app(database_url: str) -> Iterator[MonitorApp]:
    application = MonitorApp(database_url)
    yield application
    application.close()


def request(sensor_id: str, unit: str = "mm/h") -> pb.RegisterSensorRequest:
    return pb.RegisterSensorRequest(
        id=sensor_id, kind="rainfall", hazard="urban_flooding", unit_of_measure=unit,
        location=common_pb2.GeoPoint(lat=31.2, lon=121.4),
        thresholds=pb.Thresholds(blue=1, yellow=2, orange=3, red=4),
        direction=pb.DIRECTION_HIGHER_IS_WORSE)


def sensor(sensor_id: str, unit: str = "mm/h") -> Sensor:
    return Sensor.register(request(sensor_id, unit), Cause("test", NOW), NOW)


def timed(step: object) -> float:
    started = time.monotonic()
    assert callable(step)
    step()
    return time.monotonic() - started


def test_a_one_mebibyte_event_commits_and_the_next_write_is_not_held_up(
        app: MonitorApp) -> None:
    assert timed(lambda: app.record(sensor("big", "x" * (1 << 20)))) < HANG
    assert timed(lambda: app.record(sensor("small"))) < HANG
    assert app.find(Sensor, sensor("big").id) is not None


def test_many_large_events_in_one_transaction_commit(app: MonitorApp) -> None:
    many = [sensor(f"s-{i}", "y" * 300_000) for i in range(10)]  # 3 MB in one write
    assert timed(lambda: app.record(*many)) < HANG
    assert len(app.recorder.select_notifications(1, 100)) == 10


def test_a_consumer_write_is_all_or_nothing_and_a_repeat_is_refused(app: MonitorApp) -> None:
    """The write sends its tracking rows and lock as one query: a repeated tracking row
    still refuses the whole write (as a repeat, not a conflict to retry), and the
    tracked-only rows riding along are written with it or not at all."""
    first = Tracking("dispatch/incident-1", 1)
    taking = Taking(first, [Tracking("dispatch/incident-2", 1)])
    app.record(sensor("one"), taking=taking)
    assert taking.written
    assert app.inbox_position("dispatch/incident-2", 1) == (1, True)
    again = Taking(first, [Tracking("dispatch/incident-3", 1)])  # the same upstream event
    with pytest.raises(AlreadyTaken):
        app.record(sensor("two"), taking=again)
    assert not again.written
    assert app.find(Sensor, sensor("two").id) is None
    assert app.inbox_position("dispatch/incident-3", 1) == (0, False)
    app.record(sensor("three"), taking=Taking(Tracking("dispatch/incident-1", 2)))
    app.track([Tracking("dispatch/incident-4", 1), Tracking("dispatch/incident-2", 1)])
    assert app.inbox_position("dispatch/incident-4", 1) == (1, True)


def test_a_first_taken_unasked_is_refused_when_a_later_version_was_taken(
        app: MonitorApp) -> None:
    """An inbox takes an aggregate's first event without asking the store; the write
    refuses it, whole, when a later version of that aggregate was taken (parked after a
    gap), so the straggler is never applied after it."""
    app.track([Tracking("dispatch/incident-9", 2)])
    straggler = Tracking("dispatch/incident-9", 1)
    with pytest.raises(NotNext, match="incident-9 version 1 is not the next"):
        app.record(sensor("late"), taking=Taking(straggler, [Tracking("dispatch/incident-8", 1)],
                                                 first=True))
    assert app.find(Sensor, sensor("late").id) is None
    assert app.inbox_position("dispatch/incident-8", 1) == (0, False)
    app.record(sensor("new"), taking=Taking(Tracking("dispatch/incident-7", 1), first=True))
    assert app.inbox_position("dispatch/incident-7", 1) == (1, True)


def test_many_aggregates_load_in_one_query_as_the_repository_shows_them(
        app: MonitorApp) -> None:
    cached, fresh = sensor("cached"), sensor("fresh")
    app.record(cached, fresh)
    seen = app.find(Sensor, cached.id)  # now in the repository's cache, at version 1
    assert seen is not None
    seen.observe(pb.Reading(sensor_id="cached", value=3), Cause("test", NOW), NOW)
    app.record(seen)  # version 2, after the cached copy
    found = app.find_many([cached.id, fresh.id, sensor("absent").id])
    assert set(found) == {cached.id, fresh.id}
    for aggregate_id in (cached.id, fresh.id):
        shown = app.find(Sensor, aggregate_id)
        assert shown is not None
        assert found[aggregate_id].version == shown.version
        assert found[aggregate_id].view == shown.view  # type: ignore[attr-defined]
    assert found[cached.id].version == 2
    assert found[cached.id] is not app.repository.cache.get(cached.id)  # a copy


def test_monitor_still_takes_writes_after_a_command_fails_between_deciding_and_writing(
        app: MonitorApp) -> None:
    """A caller's command decides in monitor's engine, then fails before its write (its
    answer could not be built): the engine is put back and its lock is free, so another
    thread's write goes through (the lock was once released only by the next write of the
    thread that took it)."""
    app.register_sensor(request("gauge"), Cause("test", NOW), NOW)
    with pytest.raises(RuntimeError, match="answer"), app.writing():
        app.deferring([]).ingest([pb.Reading(sensor_id="gauge", value=3.5)], "gateway", NOW)
        raise RuntimeError("the answer could not be built")
    assert app.engine.sensors["gauge"].state.level == 1  # none: nothing was committed
    with ThreadPoolExecutor(1) as other:
        registered = other.submit(app.register_sensor, request("beside"),
                                  Cause("test", NOW), NOW).result(timeout=10)
    assert registered[0].id == "beside"
    answer, _ = app.ingest([pb.Reading(sensor_id="gauge", value=3.5)], "gateway", NOW)
    assert [w.level for w in answer.warnings] == [common_pb2.WARNING_LEVEL_ORANGE]


def test_an_attempt_whose_caller_left_writes_nothing(app: MonitorApp) -> None:
    """A command's write after its caller was answered without it (UNAVAILABLE during an
    outage, or its deadline passed) is refused whole, never committed later."""
    left = Attempt()
    left.abandon()
    with pytest.raises(Abandoned):
        app.record(sensor("abandoned"), attempt=left)
    with pytest.raises(Abandoned):
        app.record(sensor("too-late"), attempt=Attempt(deadline=time.monotonic() - 0.1))
    app.record(sensor("in-time"), attempt=Attempt(deadline=time.monotonic() + 10))
    assert app.find(Sensor, sensor("abandoned").id) is None
    assert app.find(Sensor, sensor("too-late").id) is None
    assert app.find(Sensor, sensor("in-time").id) is not None


def queued_behind_a_held_lock(app: ServiceApplication, writes: list[Callable[[], object]]
                              ) -> list[object]:
    """Run the writes at once while another session holds the events table's lock: the
    first waits for it inside its transaction, the others queue behind that commit; then
    let go. What each write returned or raised, in order."""
    recorder = app.process_recorder
    assert isinstance(recorder, StoreRecorder)
    table = f"{recorder.datastore.schema}.{recorder.events_table_name}"

    def outcome(write: Callable[[], object]) -> object:
        try:
            return write()
        except Exception as error:
            return error

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + HANG
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)  # the poll interval of a wait bounded by HANG

    with recorder.datastore.get_connection() as holder, \
            ThreadPoolExecutor(len(writes)) as pool:
        holder.execute("BEGIN")
        holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        def someone_waits_for_it() -> bool:
            row: Any = holder.execute("SELECT count(*) AS n FROM pg_locks WHERE NOT granted"
                                      ).fetchone()
            return bool(row["n"])

        first = pool.submit(outcome, writes[0])
        until(someone_waits_for_it, "the first write did not wait for the lock")
        rest = [pool.submit(outcome, w) for w in writes[1:]]
        until(lambda: recorder.group_commit.waiting == len(writes) - 1,
              "the writes did not queue behind the first")
        holder.execute("COMMIT")
        return [first.result(), *(f.result() for f in rest)]


def test_writes_sent_during_a_commit_are_committed_together_each_with_its_own_ids(
        plain: ServiceApplication) -> None:
    app = plain
    sensors = [sensor(f"together-{i}") for i in range(12)]
    answers = queued_behind_a_held_lock(app, [functools.partial(app.record, s)
                                              for s in sensors])
    recorder = app.process_recorder
    assert isinstance(recorder, StoreRecorder)
    assert recorder.group_commit.grouped == 11  # all but the first, in one transaction
    stored = {n.id: n.originator_id for n in recorder.select_notifications(1, 100)}
    for s, recordings in zip(sensors, answers, strict=True):
        assert isinstance(recordings, list) and len(recordings) == 1
        assert stored[recordings[0].notification.id] == s.id  # its own id, not a neighbour's


@pytest.mark.parametrize("refused", ["repeat", "caller left"])
def test_a_write_refused_in_a_group_fails_alone_and_its_neighbours_commit(
        plain: ServiceApplication, refused: str) -> None:
    """One write of the group repeats a tracking row already taken (the server refuses the
    group's transaction), or its caller has left: it is refused as it would be alone, and
    nothing of it is written, while every other write of the group commits."""
    app = plain
    app.track([Tracking("dispatch/incident-1", 1)])
    left = Attempt()
    left.abandon()
    sensors = [sensor(f"neighbour-{i}") for i in range(6)]

    def write(i: int) -> object:
        if i != 3:
            return app.record(sensors[i])
        if refused == "repeat":
            return app.record(sensors[i], taking=Taking(Tracking("dispatch/incident-1", 1)))
        return app.record(sensors[i], attempt=left)

    answers = queued_behind_a_held_lock(app, [functools.partial(write, i) for i in range(6)])
    assert isinstance(answers[3], AlreadyTaken if refused == "repeat" else Abandoned)
    for i, s in enumerate(sensors):
        assert (app.find(Sensor, s.id) is not None) == (i != 3), s.id
