"""The outbox and the inbox against real NATS JetStream and PostgreSQL.

The relay publishes every event once, in order, and resumes from its durable position; a
consumer's effects are written with the stream position, so a redelivered message, in
either order, changes nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from eventsourcing.persistence import Notification, Tracking
from google.protobuf.message import Message
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.embedded import EmbeddedNats
from lifeline.events import Cause, meta_of
from lifeline.follow import LogFollower
from lifeline.incident.aggregate import Incident
from lifeline.incident.v1 import incident_pb2
from lifeline.parking import Parking, parking_id
from lifeline.store import ServiceApplication, StoreRecorder, Taking
from lifeline_review.application import ReviewApp
from lifeline_review.demand import DemandSpec, generate
from nats.aio.msg import Msg
from nats.js import JetStreamContext

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


class Ledger(ServiceApplication):
    """A small application of incidents, as dispatch keeps them."""

    name = "ledger"


@pytest.fixture
def nats_url() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="lifeline-nats-"))
    server = EmbeddedNats(root)
    yield server.start()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


def open_incident(app: Ledger, warning: str) -> Incident:
    incident = Incident.open_for_warning(warning, "urban_flooding", common_pb2.WARNING_LEVEL_RED,
                                         common_pb2.GeoPoint(lat=31.2, lon=121.4), "3120_12140",
                                         Cause("monitor", NOW), NOW)
    app.record(incident)
    return incident


async def stream_subjects(js: JetStreamContext, stream: str) -> list[tuple[str, str]]:
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        out.append((msg.subject, (msg.headers or {})["Nats-Msg-Id"]))
    return out


async def eventually(condition: Callable[[], object], timeout: float = 10) -> None:
    """Wait until condition() holds (or the awaitable it returns gives a truthy value),
    looking every 10 ms; fail after timeout seconds."""
    async with asyncio.timeout(timeout):
        while not await _value(condition()):
            await asyncio.sleep(0.01)  # the poll interval of a wait bounded by timeout


async def _value(result: object) -> object:
    return await result if inspect.isawaitable(result) else result


async def run_until(worker: bus.OutboxRelay | bus.Inbox, done: Callable[[], object],
                    timeout: float = 10) -> None:
    task = asyncio.create_task(worker.run())
    try:
        await eventually(done, timeout)
    finally:
        worker.stopping.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_relay_publishes_each_event_once_in_order_and_resumes(
        js: JetStreamContext, database_url: str) -> None:
    app = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incident = open_incident(app, "w-1")
    second = open_incident(app, "w-2")

    relay = bus.OutboxRelay(app, js, "ledger")
    await run_until(relay, lambda: relay.position == 2)
    published = await stream_subjects(js, "LIFELINE_LEDGER")
    assert published == [("lifeline.ledger.incident.opened", f"{incident.id}/1"),
                         ("lifeline.ledger.incident.opened", f"{second.id}/1")]

    # A new relay (a restarted service) resumes after what was confirmed: nothing twice.
    again = bus.OutboxRelay(app, js, "ledger")
    await run_until(again, lambda: again.position == 2)
    assert await stream_subjects(js, "LIFELINE_LEDGER") == published

    # Even a relay that lost its position republishes nothing new: JetStream drops the
    # duplicates by Nats-Msg-Id (inside the duplicate window).
    forgetful = bus.OutboxRelay(app, js, "ledger")
    forgetful.position = 0
    await run_until(forgetful, lambda: forgetful.position == 2)
    assert await stream_subjects(js, "LIFELINE_LEDGER") == published
    app.close()


async def test_relay_takes_what_its_process_committed_and_reads_only_the_rest(
        js: JetStreamContext, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What this process just committed is published without being read back from the log;
    what it was not handed (another process's write) is read, and everything goes out in
    order, once."""
    app, other = Ledger(database_url), Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    read: list[int] = []  # notification ids the relay read from the log
    idle: list[int] = []  # its reads that found nothing new
    select = app.recorder.select_notifications

    def counted(*args: object, **kwargs: object) -> object:
        found = select(*args, **kwargs)  # type: ignore[arg-type]
        read.extend(n.id for n in found)
        if not found:
            idle.append(1)
        return found

    async def caught_up(position: int) -> None:
        """At the position, and past its next look at the log (which would read anything
        committed meanwhile): from here on it waits to be handed the next write."""
        await eventually(lambda: relay.position == position)
        looks = len(idle)
        await eventually(lambda: len(idle) > looks)

    monkeypatch.setattr(app.recorder, "select_notifications", counted)
    relay = bus.OutboxRelay(app, js, "ledger")
    task = asyncio.create_task(relay.run())
    try:
        first = open_incident(app, "w-1")
        await caught_up(1)
        second = open_incident(app, "w-2")
        await caught_up(2)
        third = open_incident(other, "w-3")  # another process: nothing handed over
        fourth = open_incident(app, "w-4")  # handed over, but after one it was not
        await eventually(lambda: relay.position == 4)
    finally:
        relay.stopping.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # 3 is read; 4 too, unless the relay looked between the two writes and took it handed.
    assert read in ([3, 4], [3])
    assert await stream_subjects(js, "LIFELINE_LEDGER") == [
        ("lifeline.ledger.incident.opened", f"{i.id}/1") for i in (first, second, third, fourth)]
    app.close()
    other.close()


class Batches(LogFollower):
    """A follower that notes the batches it is handed."""

    def __init__(self, app: ServiceApplication) -> None:
        super().__init__(app, "batches")
        self.seen: list[list[int]] = []

    async def load_position(self) -> int:
        return 0

    async def handle(self, notifications: Sequence[Notification]) -> None:
        self.seen.append([n.id for n in notifications])


async def test_a_lingering_follower_gathers_writes_and_a_waiter_ends_the_wait(
        database_url: str) -> None:
    """The projector lingers on what nobody waits for (a consumer's write), gathering the
    writes that follow into one batch; a caller waiting to read its own write ends the
    linger at once, and so does a command hurrying it."""
    app = Ledger(database_url)
    follower = Batches(app)
    follower.linger = 30.0
    task = asyncio.create_task(follower.run())
    try:
        open_incident(app, "w-linger-1")
        open_incident(app, "w-linger-2")
        # Ended by the waiter: well within the linger, however slow the machine.
        await follower.wait_for(2, timeout=follower.linger / 2)
        assert follower.seen == [[1, 2]]
        # A command that showed its own views only hurries the follower (a live view
        # waits for it): the linger ends all the same.
        open_incident(app, "w-linger-3")
        follower.hurry(3)
        await eventually(lambda: follower.seen == [[1, 2], [3]], follower.linger / 2)
    finally:
        follower.stopping.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        app.close()


async def test_review_publishes_what_it_decides_not_its_copy_of_dispatch_events(
        js: JetStreamContext, database_url: str) -> None:
    """Review keeps a copy of every incident event; the copies stay in review (they are
    dispatch's events, on dispatch's stream already), an imported history goes out."""
    app = ReviewApp(database_url)
    await bus.ensure_stream(js, "review")
    live, other = generate(DemandSpec(incidents=2, seed=3, false_alarms=0))
    for event in live[:3]:
        app.keep(event, NOW, None)
    imported, _ = app.import_history(other, Cause("evaluator", NOW), NOW)
    last = app.recorder.max_notification_id()
    relay = bus.OutboxRelay(app, js, "review")
    await run_until(relay, lambda: relay.position == last)
    assert await stream_subjects(js, "LIFELINE_REVIEW") == [
        ("lifeline.review.history.imported", f"{imported.id}/1")]
    app.close()


def test_tracking_refuses_repeats_in_either_order(database_url: str) -> None:
    """A redelivery of a message older than one already processed is still recognised, and
    an older message processed after a newer one is not mistaken for a repeat."""
    app = Ledger(database_url)
    newer, older = Tracking("LIFELINE_MONITOR", 7), Tracking("LIFELINE_MONITOR", 3)
    app.record(open_incident_pending(app, "w-7"), taking=Taking(newer))
    assert not app.is_processed(older)
    app.record(open_incident_pending(app, "w-3"), taking=Taking(older))
    assert app.is_processed(older) and app.is_processed(newer)
    app.close()


def open_incident_pending(app: Ledger, warning: str) -> Incident:
    return Incident.open_for_warning(warning, "urban_flooding", common_pb2.WARNING_LEVEL_RED,
                                     common_pb2.GeoPoint(lat=31.2, lon=121.4), "3120_12140",
                                     Cause("monitor", NOW), NOW)


async def test_redelivered_messages_change_nothing(js: JetStreamContext,
                                                    database_url: str) -> None:
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    for n in range(5):
        open_incident(upstream, f"w-{n}")
    relay = bus.OutboxRelay(upstream, js, "ledger")
    await run_until(relay, lambda: relay.position == 5)

    class Copier(ServiceApplication):
        name = "copier"

    downstream = Copier(database_url)
    handled: list[str] = []

    async def handle(subject: str, wrapper: Message, taking: Taking) -> None:
        assert isinstance(wrapper, incident_pb2.IncidentEvent)
        copy = Incident.open_for_warning(f"copy-{wrapper.opened.warning_id}", "x", 1,
                                         common_pb2.GeoPoint(), "", Cause("copier", NOW), NOW)
        await asyncio.to_thread(downstream.record, copy, taking=taking)
        handled.append(wrapper.opened.warning_id)

    def inbox(name: str) -> bus.Inbox:
        return bus.Inbox(downstream, js, consumer=name, upstream="ledger",
                         subjects=["lifeline.ledger.incident.>"],
                         message_types={"lifeline.incident.v1.IncidentEvent":
                                        incident_pb2.IncidentEvent}, handle=handle)

    first = inbox("copier")
    await run_until(first, lambda: first.processed == 5)
    assert sorted(handled) == [f"w-{n}" for n in range(5)]
    # A second durable consumer delivers every message again: the same event identities,
    # so each write is refused as a repeat (the tracking rows' key) and nothing is written
    # twice.
    replay = inbox("copier-replay")
    await run_until(replay, lambda: replay.processed == 5)
    assert len(handled) == 5
    assert downstream.recorder.max_notification_id() == 5
    upstream.close()
    downstream.close()


# ---- identity, order and parking ----
#
# The consumer below is review's: it keeps every incident event of the upstream ("ledger")
# in a history, so a repeat or a gap would show in the history itself.

LEDGER_TYPE = {incident_pb2.IncidentEvent.DESCRIPTOR.full_name: incident_pb2.IncidentEvent}


def grow(app: Ledger, incident: Incident, steps: int) -> None:
    """More events on one incident: its warning level moving up and down."""
    for n in range(steps):
        level = common_pb2.WARNING_LEVEL_ORANGE if n % 2 == 0 else common_pb2.WARNING_LEVEL_RED
        incident.change_warning_level(level, Cause("monitor", NOW), NOW)
    app.record(incident)


def published(app: Ledger) -> list[tuple[str, bytes, dict[str, str]]]:
    """Every event of the ledger as the relay publishes it: (subject, data, headers)."""
    out = []
    for notification in app.recorder.select_notifications(1, 1000):
        event = app.mapper.to_domain_event(notification)
        wrapper = event.message(incident_pb2.IncidentEvent)
        out.append((bus.subject_for("ledger", wrapper), wrapper.SerializeToString(),
                    {"Nats-Msg-Id": f"{event.originator_id}/{event.originator_version}",
                     bus.TYPE_HEADER: incident_pb2.IncidentEvent.DESCRIPTOR.full_name}))
    return out


class Keeper:
    """Review's application behind an inbox, with a switch to make one incident fail."""

    def __init__(self, js: JetStreamContext, database_url: str, **options: object) -> None:
        from lifeline_review.application import ReviewApp

        self.app = ReviewApp(database_url)
        self.poisoned: set[str] = set()

        async def handle(subject: str, wrapper: Message, taking: Taking) -> None:
            assert isinstance(wrapper, incident_pb2.IncidentEvent)
            if meta_of(wrapper).aggregate_id in self.poisoned:
                raise ValueError("poison: this handler cannot take it")
            await asyncio.to_thread(self.app.keep, wrapper, NOW, taking)

        self.inbox = bus.Inbox(self.app, js, consumer="keeper", upstream="ledger",
                               subjects=["lifeline.ledger.incident.>"],
                               message_types=LEDGER_TYPE, handle=handle,
                               **options)  # type: ignore[arg-type]
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.inbox.run())

    async def stop(self) -> None:
        self.inbox.stopping.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.app.close()

    def sequences(self, incident: Incident) -> list[int]:
        from lifeline_review.domain import IncidentHistory

        history = self.app.find(IncidentHistory, incident.id)
        return [] if history is None else [meta_of(e).sequence for e in history.events]

    async def until_complete(self, *incidents: Incident, timeout: float = 15) -> None:
        """Wait (polling the store, no fixed sleep) until every incident's history is
        complete; then it must be exactly 1..n, nothing repeated, nothing missing."""
        await eventually(lambda: asyncio.to_thread(
            lambda: all(len(self.sequences(i)) >= i.version for i in incidents)), timeout)
        for incident in incidents:
            assert self.sequences(incident) == list(range(1, incident.version + 1))


async def test_one_aggregates_events_are_applied_in_order_whatever_order_they_arrive(
        js: JetStreamContext, database_url: str) -> None:
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    first, second = open_incident(upstream, "w-1"), open_incident(upstream, "w-2")
    grow(upstream, first, 4)
    grow(upstream, second, 2)
    events = published(upstream)
    # First's events last to first, second's in order between them: each of first's comes
    # before the one it follows, and must wait for it.
    mine = [e for e in events if str(first.id) in e[2]["Nats-Msg-Id"]]
    theirs = [e for e in events if str(second.id) in e[2]["Nats-Msg-Id"]]
    for subject, data, headers in [*mine[:0:-1], *theirs, mine[0]]:
        await js.publish(subject, data, headers=headers)

    keeper = Keeper(js, database_url)
    keeper.start()
    try:
        await keeper.until_complete(first, second)
        # The last write shows in the store a moment before its message is acknowledged
        # and counted.
        await eventually(lambda: keeper.inbox.processed >= len(events), 10)
        assert keeper.inbox.processed == len(events)
    finally:
        await keeper.stop()
        upstream.close()


async def test_a_republish_after_the_duplicate_window_changes_nothing(
        js: JetStreamContext, database_url: str) -> None:
    upstream = Ledger(database_url)
    window = 0.5
    await bus.ensure_stream(js, "ledger", duplicate_window=window)
    incident = open_incident(upstream, "w-1")
    grow(upstream, incident, 3)
    relay = bus.OutboxRelay(upstream, js, "ledger")
    await run_until(relay, lambda: relay.position == 4)
    keeper = Keeper(js, database_url)
    keeper.start()
    try:
        await keeper.until_complete(incident)
        kept = keeper.app.recorder.max_notification_id()
        # The broker has forgotten the ids (the window is short here, two minutes in
        # production; a relay down for longer republishes): the same events come again.
        await asyncio.sleep(window * 2)  # the point: the duplicate window passes
        forgetful = bus.OutboxRelay(upstream, js, "ledger")
        forgetful.position = 0
        await run_until(forgetful, lambda: forgetful.position == 4)
        assert (await js.stream_info("LIFELINE_LEDGER")).state.messages == 8
        await eventually(lambda: keeper.inbox.processed >= 8, 10)
        assert keeper.sequences(incident) == [1, 2, 3, 4]
        assert keeper.app.recorder.max_notification_id() == kept
    finally:
        await keeper.stop()
        upstream.close()


async def test_a_deleted_and_recreated_stream_loses_nothing_new_and_repeats_nothing(
        js: JetStreamContext, database_url: str) -> None:
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incident = open_incident(upstream, "w-1")
    grow(upstream, incident, 3)
    relay = bus.OutboxRelay(upstream, js, "ledger")
    relay_task = asyncio.create_task(relay.run())
    keeper = Keeper(js, database_url)
    keeper.start()
    try:
        await keeper.until_complete(incident)
        # The stream goes (an operator's mistake, a broker rebuilt) and comes back empty:
        # its sequences restart at 1, where the events already applied used to be.
        await js.delete_stream("LIFELINE_LEDGER")
        await bus.ensure_stream(js, "ledger")
        later = open_incident(upstream, "w-2")
        grow(upstream, later, 2)
        grow(upstream, incident, 2)
        await keeper.until_complete(incident, later)
        info = await js.stream_info("LIFELINE_LEDGER")
        new = later.version + incident.version - 4
        assert (info.state.first_seq, info.state.messages) == (1, new)
        await eventually(lambda: keeper.inbox.processed >= 4 + new, 10)  # as above
        assert keeper.inbox.processed == 4 + new
    finally:
        relay.stopping.set()
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await keeper.stop()
        upstream.close()


async def test_a_poison_message_is_parked_while_other_incidents_flow_then_retried_once(
        js: JetStreamContext, database_url: str) -> None:
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    poisoned = open_incident(upstream, "w-poison")
    relay = bus.OutboxRelay(upstream, js, "ledger")
    relay_task = asyncio.create_task(relay.run())
    keeper = Keeper(js, database_url, max_attempts=3)
    keeper.poisoned.add(str(poisoned.id))
    keeper.start()
    try:
        await eventually(lambda: keeper.inbox.parked >= 1, 15)
        # The poisoned incident's later events park behind its first; the next incident
        # flows as if nothing happened.
        grow(upstream, poisoned, 2)
        healthy = open_incident(upstream, "w-next")
        grow(upstream, healthy, 3)
        await keeper.until_complete(healthy)
        await eventually(lambda: keeper.inbox.parked >= 3, 10)
        parking = keeper.app.find(Parking, parking_id("keeper", str(poisoned.id)))
        assert parking is not None
        assert [m.version for m in parking.waiting] == [1, 2, 3]
        assert parking.waiting[0].attempts == 3
        assert "poison" in parking.waiting[0].error
        assert parking.waiting[1].error == "parked behind version 1"
        assert keeper.sequences(poisoned) == []

        operator = Cause("li", NOW)
        # Still poison: the retry fails again, is recorded, and nothing is applied.
        assert await keeper.inbox.retry_parked(parking.id, operator) == 0
        parking = keeper.app.find(Parking, parking.id)
        assert parking is not None and parking.waiting[0].attempts == 4
        # Fixed: the retry applies the three in order, and a second retry does nothing.
        keeper.poisoned.clear()
        assert await keeper.inbox.retry_parked(parking.id, operator) == 3
        assert await keeper.inbox.retry_parked(parking.id, operator) == 0
        assert keeper.sequences(poisoned) == [1, 2, 3]
        # Its next event flows normally again.
        grow(upstream, poisoned, 1)
        await keeper.until_complete(poisoned, healthy)
    finally:
        relay.stopping.set()
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await keeper.stop()
        upstream.close()


async def test_a_batch_taken_side_by_side_commits_its_neighbours_and_parks_only_the_poison(
        js: JetStreamContext, database_url: str) -> None:
    """Thirty incidents' events wait in the stream and arrive in one fetched batch: the
    consumer takes the incidents side by side, their writes share transactions, each
    history is complete and in order, and the one poisoned incident alone is parked."""
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incidents = [open_incident(upstream, f"w-batch-{n}") for n in range(30)]
    for incident in incidents:
        grow(upstream, incident, 2)
    relay = bus.OutboxRelay(upstream, js, "ledger")
    last = upstream.recorder.max_notification_id()
    await run_until(relay, lambda: relay.position == last)
    keeper = Keeper(js, database_url, max_attempts=2, batch=128, lanes=16)
    poisoned = incidents[7]
    keeper.poisoned.add(str(poisoned.id))
    keeper.start()
    try:
        await keeper.until_complete(*(i for i in incidents if i is not poisoned))
        await eventually(lambda: keeper.inbox.parked >= 3, 15)
        parking = keeper.app.find(Parking, parking_id("keeper", str(poisoned.id)))
        assert parking is not None and [m.version for m in parking.waiting] == [1, 2, 3]
        assert keeper.sequences(poisoned) == []
        recorder = keeper.app.process_recorder
        assert isinstance(recorder, StoreRecorder)
        assert recorder.group_commit.grouped > 0, "the incidents' writes were not shared"
    finally:
        await keeper.stop()
        upstream.close()


async def test_a_gap_that_never_closes_is_parked_and_the_straggler_joins_it(
        js: JetStreamContext, database_url: str) -> None:
    """An event whose predecessor does not come (lost with a stream, held too long) waits
    a bounded time, then is parked naming the gap; when the predecessor turns up after
    all, it joins the parking, and a retry applies all of them in order."""
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incident = open_incident(upstream, "w-gap")
    grow(upstream, incident, 2)
    first, *rest = published(upstream)
    for subject, data, headers in rest:
        await js.publish(subject, data, headers=headers)
    keeper = Keeper(js, database_url, early_wait=0.5)
    keeper.start()
    try:
        await eventually(lambda: keeper.inbox.parked >= 2, 10)
        parking = keeper.app.find(Parking, parking_id("keeper", str(incident.id)))
        assert parking is not None
        assert [(m.version, m.error) for m in parking.waiting] == [
            (2, "gap: versions 1..1 did not arrive within 0.5s"),
            (3, "parked behind version 2")]
        await js.publish(*first[:2], headers=first[2])
        await eventually(lambda: keeper.inbox.parked >= 3, 10)
        assert keeper.sequences(incident) == []
        assert await keeper.inbox.retry_parked(parking.id, Cause("li", NOW)) == 3
        await keeper.until_complete(incident)
    finally:
        await keeper.stop()
        upstream.close()


async def test_events_only_tracked_are_recorded_with_the_next_write_and_survive_a_failure(
        js: JetStreamContext, database_url: str) -> None:
    """A consumer that reacts to one kind of event writes the rows of the others with its
    next write (or at the end of the batch), not one transaction each; a failing handler
    loses none of them, and a republish of everything is recognised, row for row."""
    upstream = Ledger(database_url)
    window = 0.5
    await bus.ensure_stream(js, "ledger", duplicate_window=window)
    first, second = open_incident(upstream, "w-1"), open_incident(upstream, "w-2")
    grow(upstream, first, 3)
    grow(upstream, second, 2)
    third = open_incident(upstream, "w-3")  # handled after tracked-only ones of the others
    relay = bus.OutboxRelay(upstream, js, "ledger")
    total = 3 + 3 + 2
    await run_until(relay, lambda: relay.position == total)
    keeper = Keeper(js, database_url, handles=["lifeline.ledger.incident.opened"])
    keeper.poisoned.add(str(third.id))  # fails at first, so the batch ends in a failure
    keeper.start()
    try:
        await eventually(lambda: keeper.inbox.processed >= total - 1, 10)
        keeper.poisoned.clear()
        await eventually(lambda: keeper.inbox.processed >= total, 10)
        for incident in (first, second, third):
            assert keeper.sequences(incident) == [1]  # only `opened` is kept
            for version in range(1, incident.version + 1):
                assert keeper.app.inbox_position(f"ledger/{incident.id}", version) == (
                    incident.version, True)
        kept = keeper.app.recorder.max_notification_id()
        await asyncio.sleep(window * 2)  # the broker forgets the message ids
        forgetful = bus.OutboxRelay(upstream, js, "ledger")
        forgetful.position = 0
        await run_until(forgetful, lambda: forgetful.position == total)
        await eventually(lambda: keeper.inbox.processed >= 2 * total, 10)
        assert keeper.app.recorder.max_notification_id() == kept
        assert keeper.inbox.parked == 0
    finally:
        await keeper.stop()
        upstream.close()


async def test_a_replacement_takes_what_a_dead_consumer_held_without_waiting_out_ack_wait(
        nats_url: str, database_url: str) -> None:
    """A consumer killed while holding messages (unacknowledged) would have them back only
    after ack_wait (ten minutes here); its replacement takes them over at once."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incident = open_incident(upstream, "w-1")
    grow(upstream, incident, 4)
    relay = bus.OutboxRelay(upstream, js, "ledger")
    await run_until(relay, lambda: relay.position == 5)
    # The dead one: took all five, acknowledged none, and vanished.
    dead = await nats.connect(nats_url)
    dead_js = dead.jetstream()
    await dead_js.add_consumer("LIFELINE_LEDGER", nats.js.api.ConsumerConfig(
        durable_name="keeper", ack_policy=nats.js.api.AckPolicy.EXPLICIT, ack_wait=600,
        filter_subjects=["lifeline.ledger.incident.>"]))
    held = await (await dead_js.pull_subscribe_bind("keeper", "LIFELINE_LEDGER")).fetch(5)
    assert len(held) == 5
    await dead.close()

    keeper = Keeper(js, database_url, ack_wait=600)
    keeper.start()
    try:
        # A takeover however slow the machine, and far short of ack_wait.
        await keeper.until_complete(incident, timeout=120)
    finally:
        await keeper.stop()
        upstream.close()
        await nc.close()


async def held_by_keeper(js: JetStreamContext) -> int:
    """How many messages the keeper's consumer holds unacknowledged (0 before it exists)."""
    try:
        return (await js.consumer_info("LIFELINE_LEDGER", "keeper")).num_ack_pending or 0
    except nats.js.errors.NotFoundError:
        return 0


async def test_a_lingering_consumer_takes_a_burst_after_it_in_one_batch(
        js: JetStreamContext, database_url: str) -> None:
    """A consumer off the dispatch path (review, monitor's outcomes) lingers: what arrives
    while the first event of a burst waits is handled with it, after the burst (when
    dispatch has done with it), not event by event during it."""
    upstream = Ledger(database_url)
    await bus.ensure_stream(js, "ledger")
    incident = open_incident(upstream, "w-1")
    grow(upstream, incident, 4)
    events = published(upstream)
    await js.publish(*events[0][:2], headers=events[0][2])
    keeper = Keeper(js, database_url, linger=1.0)
    handled_at: list[float] = []
    gathered: list[int] = []  # what each linger took in, after the batch it waited with
    handle, gather = keeper.inbox.handle, keeper.inbox._gather

    async def timed(subject: str, wrapper: Message, taking: Taking) -> None:
        handled_at.append(asyncio.get_running_loop().time())
        await handle(subject, wrapper, taking)

    async def counted(room: int) -> list[Msg]:
        more = await gather(room)
        gathered.append(len(more))
        return more

    keeper.inbox.handle = timed
    keeper.inbox._gather = counted  # type: ignore[method-assign]
    keeper.start()
    try:
        # The first is fetched and held, lingering; the rest of the burst follows.
        await eventually(lambda: held_by_keeper(js))
        for subject, data, headers in events[1:]:
            await js.publish(subject, data, headers=headers)
        burst_ended = asyncio.get_running_loop().time()
        await keeper.until_complete(incident)
        assert len(handled_at) == len(events)
        assert min(handled_at) >= burst_ended  # nothing handled while the burst came
        assert gathered[0] == len(events) - 1  # all in the one lingered batch
    finally:
        await keeper.stop()
        upstream.close()
