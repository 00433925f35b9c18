"""Review replays many histories without a domain event per stored row (`replay_rows`, the
incident fold's `extend`): it must give the very history, state and version the library's
own fold of the domain events gives (the repository's way), for any history the Incident
aggregate can record, whatever mix of binary and JSON rows it is stored in."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.domain import OriginatorVersionError
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifeline.common.v1 import common_pb2
from lifeline.encoding import _BINARY, _HEAD, ProtoMapper, StoredRows, replay_rows
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, fold, to_json
from lifeline.incident.aggregate import Incident
from lifeline.incident.state import IncidentState
from lifeline.incident.steps import STEPS
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.review.v1 import review_pb2
from lifeline_review.demand import DemandSpec, generate
from lifeline_review.domain import IncidentHistory, validate_history

from tests.unit.test_incident_model import GRADES, HAZARDS, Drive, commands

NOW = datetime(2026, 7, 21, 8, 0, tzinfo=UTC)
CAUSE = Cause(actor="test", occurred_at=NOW)


def mapper() -> ProtoMapper:
    """The mapper of review's application, with the transcodings it registers."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return ProtoMapper(transcoder=transcoder)


MAPPER = mapper()


def stored(history: list[pb.IncidentEvent], imported: bool = False) -> list[StoredEvent]:
    """The rows review writes for a history (kept live, or imported under an id of its
    own), binary."""
    if imported:
        kept = IncidentHistory.import_(uuid4(), history, "digest", CAUSE, NOW)
    else:
        kept = IncidentHistory.begin(history[0], CAUSE, NOW)
        for event in history[1:]:
            kept.append(event, CAUSE, NOW)
    return [MAPPER.to_stored_event(e) for e in kept.collect_events()]


def as_json(row: StoredEvent) -> StoredEvent:
    """The same row as stores wrote it before events were stored binary."""
    event: Any = copy.copy(MAPPER.to_domain_event(row))
    object.__setattr__(event, "payload", to_json(event.payload))
    return MAPPER.to_stored_event(event)


def columns(rows: list[StoredEvent]) -> StoredRows:
    """The rows as review's query across incidents gives them (one history's columns)."""
    return StoredRows(rows[0].originator_id, [r.originator_version for r in rows],
                      [r.topic for r in rows], [r.state for r in rows])


def assert_same_history(rows: list[StoredEvent]) -> IncidentHistory:
    normal = fold(None, [MAPPER.to_domain_event(r) for r in rows])
    fast = replay_rows(MAPPER, columns(rows))
    assert isinstance(fast, IncidentHistory) and isinstance(normal, IncidentHistory)
    assert fast.state.view == normal.state.view
    assert fast.events == normal.events
    assert fast.imported == normal.imported
    assert (fast.id, fast.version, fast.created_on, fast.modified_on, fast.origin_trace) == \
        (normal.id, normal.version, normal.created_on, normal.modified_on, normal.origin_trace)
    assert vars(fast).keys() == vars(normal).keys()
    return fast


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=commands, minutes=st.lists(st.integers(0, 90), min_size=50, max_size=50),
       every=st.integers(3, 20), chores=st.integers(1, 5), hazard=st.sampled_from(HAZARDS),
       grade=st.sampled_from(GRADES), json_rows=st.sets(st.integers(0, 80)),
       imported=st.booleans(), split=st.integers(0, 80))
def test_the_fast_replay_gives_the_history_the_library_folds(
        commands: list[tuple[Any, ...]], minutes: list[int], every: int, chores: int,
        hazard: str, grade: int, json_rows: set[int], imported: bool, split: int) -> None:
    """Any command sequence the aggregate accepts (regrades, reopenings, orders, overdue
    deadlines, materials, recovery tasks...), its history kept live or imported, some rows
    stored as JSON: the fast replay and the library's fold agree, and both agree with the
    aggregate that recorded the history."""
    drive = Drive()
    drive.play(commands, minutes, every, chores, hazard, grade)
    rows = stored(drive.history, imported)
    rows = [as_json(r) if n in json_rows else r for n, r in enumerate(rows)]
    history = assert_same_history(rows)
    assert history.state.view == drive.incident.view
    # The fold in one pass or in two, or event by event, is the same fold.
    halves = IncidentState()
    halves.extend(drive.history[:split])
    halves.extend(drive.history[split:])
    one_by_one = IncidentState()
    for event in drive.history:
        one_by_one.apply(event)
    assert halves.view == one_by_one.view == drive.incident.view


def test_generated_demand_replays_the_same_fast_and_slow() -> None:
    for history in generate(DemandSpec(incidents=40, seed=3, situation_reports_per_hour=6)):
        assert assert_same_history(stored(history)).events == history


def test_every_event_type_of_the_schema_has_a_step_in_the_fold() -> None:
    oneof = pb.IncidentEvent.DESCRIPTOR.oneofs_by_name["event"]
    assert set(STEPS) == {field.name for field in oneof.fields}


def test_a_gap_in_the_stored_rows_is_refused_as_the_library_refuses_it() -> None:
    rows = stored(generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0])
    for gap in (rows[:3] + rows[4:], rows[:-2] + rows[-1:]):
        with pytest.raises(OriginatorVersionError):
            fold(None, [MAPPER.to_domain_event(r) for r in gap])
        with pytest.raises(OriginatorVersionError):
            replay_rows(MAPPER, columns(gap))


def test_an_import_after_a_history_began_is_refused_on_replay() -> None:
    """An import only ever starts a history (the aggregate has no command to add one
    later): one forged into a stored history after its first event is refused, not
    folded as if the incident had an empty event."""
    history = generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0]
    kept = IncidentHistory.begin(history[0], CAUSE, NOW)
    kept.record("imported", review_pb2.HistoryImported(original_incident_id="x"), CAUSE, NOW)
    rows = [MAPPER.to_stored_event(e) for e in kept.collect_events()]
    with pytest.raises(ValueError, match="empty IncidentEvent"):
        replay_rows(MAPPER, columns(rows))


def test_a_failed_event_leaves_the_clock_where_one_by_one_leaves_it() -> None:
    """A history that does not follow (a unit never assigned reports its status): the
    batch raises as the event-by-event fold does, with the same state at the failure."""
    history = generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0]
    source = history[5]
    bad = pb.IncidentEvent()
    bad.unit_status_reported.meta.CopyFrom(getattr(source, str(source.WhichOneof("event"))).meta)
    bad.unit_status_reported.unit_id = "never-assigned"
    bad.unit_status_reported.status = common_pb2.UNIT_STATUS_EN_ROUTE
    events = [*history[:5], bad, *history[6:]]
    batch, one_by_one = IncidentState(), IncidentState()
    with pytest.raises(ValueError, match="'never-assigned' was never assigned"):
        batch.extend(events)
    with pytest.raises(ValueError, match="'never-assigned' was never assigned"):
        for event in events:
            one_by_one.apply(event)
    assert batch.view == one_by_one.view
    assert batch.view.version == 6


def test_steps_recorded_without_a_recording_time_fold_the_same_in_one_pass() -> None:
    """A hand-written history may leave recorded_at out: the field clock's offset is then
    the latest step's that has it, in one pass as event by event."""
    history = generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0]
    events = []
    for n, source in enumerate(history):
        event = pb.IncidentEvent()
        event.CopyFrom(source)
        if n >= len(history) - 4:
            getattr(event, str(event.WhichOneof("event"))).meta.ClearField("recorded_at")
        events.append(event)
    batch, one_by_one = IncidentState(), IncidentState()
    batch.extend(events)
    for event in events:
        one_by_one.apply(event)
    assert batch.view == one_by_one.view
    assert batch.view.field_time_offset == \
        IncidentState.replay(history[:-4]).view.field_time_offset


def test_a_copied_state_folds_on_into_its_own_view() -> None:
    """The fold holds the view's units, orders and tasks; a copy (the repository hands
    out one per use of a cached incident) must hold its own, or the next events would
    change the original's view and not the copy's."""
    history = generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0]
    fields = [e.WhichOneof("event") for e in history]
    half = fields.index("order_acknowledged")  # units and orders exist, and change after
    original = IncidentState.replay(history[:half])
    before = pb.Incident()
    before.CopyFrom(original.view)
    clone = copy.deepcopy(original)
    clone.extend(history[half:])
    assert original.view == before
    assert clone.view == IncidentState.replay(history).view
    assert clone.order(history[half].order_acknowledged.order_id).status != \
        pb.ORDER_STATUS_ISSUED


@pytest.mark.parametrize("trace", [{}, {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"},
                                   {"traceparent": "00-x-y-01", "tracestate": "k=v"}])
def test_a_first_rows_head_reads_back_in_the_compact_and_the_json_form(
        trace: dict[str, str]) -> None:
    """A history's first row carries its aggregate's topic and trace context: compact (`t`)
    for none or a lone traceparent, JSON for anything else and in every first row written
    before the compact form. Each reads back to the same history, fast or through the
    library."""
    history = generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0]
    kept = IncidentHistory.begin(history[0], CAUSE, NOW)
    for event in history[1:3]:
        kept.append(event, CAUSE, NOW)
    events = kept.collect_events()
    object.__setattr__(events[0], "trace", trace)
    rows = [MAPPER.to_stored_event(e) for e in events]
    start = len(_BINARY) + _HEAD.size
    schema, micros, length = _HEAD.unpack_from(rows[0].state, len(_BINARY))
    head = rows[0].state[start:start + length]
    assert head[:1] == (b"{" if "tracestate" in trace else b"t")
    old_head = json.dumps({"tr": trace, "ot": get_topic(IncidentHistory)},
                          separators=(",", ":")).encode()
    old_first = replace(rows[0], state=b"".join((
        _BINARY, _HEAD.pack(schema, micros, len(old_head)), old_head,
        rows[0].state[start + length:])))
    for first in (rows[0], old_first):
        replayed = assert_same_history([first, *rows[1:]])
        assert replayed.origin_trace == trace


@pytest.mark.parametrize("overflow", ["a request made twice", "two shortfalls"])
def test_a_count_past_what_the_view_holds_is_refused_naming_its_event(overflow: str) -> None:
    """The fold keeps counts as Python ints; one past the view message's uint32 is refused
    as the event that made it (an import says which), not when a view is built later."""
    history = generate(DemandSpec(incidents=1, seed=4, false_alarms=0))[0]
    at = next(n for n, e in enumerate(history) if e.WhichOneof("event") ==
              "resources_requested")
    events = [copy.deepcopy(e) for e in history]
    request = events[at].resources_requested
    request.requirements[0].count = 2**32 - 1
    if overflow == "a request made twice":
        added = [copy.deepcopy(events[at])]
    else:
        short = pb.IncidentEvent()
        short.resource_shortfall.meta.CopyFrom(request.meta)
        short.resource_shortfall.unit_kind, short.resource_shortfall.missing = "x", 2**32 - 1
        added = [short, copy.deepcopy(short)]
    events[at + 1:at + 1] = added
    for n, event in enumerate(events, start=1):
        getattr(event, str(event.WhichOneof("event"))).meta.sequence = n
    with pytest.raises(InvalidArgument) as refused:
        validate_history(events)
    assert refused.value.field == f"events[{at + len(added)}]"
    assert "more than a count holds" in str(refused.value)


def test_a_history_stored_before_the_model_was_split_still_loads() -> None:
    # Rows written then name the aggregate by the module it lived in, lifeline.incident.model.
    incident = Incident.report(uuid4(), "flood", common_pb2.GeoPoint(lat=31.2, lon=121.5),
                               "water in the underpass", "caller", "", CAUSE, NOW)
    incident.dismiss(CAUSE, NOW)
    events: list[Any] = list(incident.collect_events())
    events[0] = copy.copy(events[0])
    object.__setattr__(events[0], "originator_topic", "lifeline.incident.model:Incident")
    rows = [replace(MAPPER.to_stored_event(e),
                    topic=get_topic(type(e)).replace(".aggregate:", ".model:")) for e in events]
    assert all(r.topic.startswith("lifeline.incident.model:Incident.") for r in rows)
    for loaded in (fold(None, [MAPPER.to_domain_event(r) for r in rows]),
                   replay_rows(MAPPER, columns(rows))):
        assert isinstance(loaded, Incident)
        assert loaded.view == incident.view
