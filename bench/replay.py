"""How fast review replays stored histories: events folded into incident state per second
from 10,000 stored histories, read from the store the way review reads them, against a raw
read of the same rows and a binary protobuf decode of their payloads, measured in the same
run on the same PostgreSQL. Two ways of reading: across incidents (EvaluateIncidents,
GetCityAsOf: a query per 200 histories) and one history at a time (the repository: a query
per history, as for ReplayIncident). Also: the fold alone (events already decoded, no store),
canonical-JSON parsing of the same events (how events were stored before), importing one
10,000-event history (validation, hash chain, write), and rehearsing a generated city day of
1,000 incidents. Each read is measured in interleaved rounds and the best kept (the machine
is shared), with the garbage collector set as the review service sets it (`lifeline.heap`).

The histories are generated (lifeline_review.demand: seeded, the Incident aggregate and the
shipped plans, about 35 events each; 1,000 distinct, the rest copies under other ids) and
written to review's store before the clock starts.

    python bench/replay.py [--histories 10000] [--import-events 10000] [--day 1000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from uuid import UUID

from benchkit import embedded_postgres
from google.protobuf import json_format
from lifeline import heap
from lifeline.encoding import _BINARY, _HEAD, ProtoMapper
from lifeline.events import Cause, meta_of, stable_id
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2
from lifeline_review import rehearsal
from lifeline_review.application import ReviewApp
from lifeline_review.demand import DemandSpec, default_fleet, draw_calls, generate
from lifeline_review.domain import IncidentHistory

NOW = datetime(2026, 7, 21, 8, 0, tzinfo=UTC)
BATCH = 200  # histories per transaction while filling the store


def renumbered(history: list[incident_pb2.IncidentEvent], copy: int
               ) -> list[incident_pb2.IncidentEvent]:
    """The same history under another incident id (to reach 10,000 distinct histories
    without generating each one)."""
    incident_id = str(stable_id("bench-replay", meta_of(history[0]).aggregate_id, str(copy)))
    out = []
    for event in history:
        clone = incident_pb2.IncidentEvent()
        clone.CopyFrom(event)
        meta_of(clone).aggregate_id = incident_id
        out.append(clone)
    return out


def fill(app: ReviewApp, histories: list[list[incident_pb2.IncidentEvent]], count: int
         ) -> tuple[list[UUID], int]:
    ids, events, pending = [], 0, []
    for n in range(count):
        history = histories[n % len(histories)]
        if n >= len(histories):
            history = renumbered(history, n)
        cause = Cause(actor="bench", occurred_at=NOW)
        kept = IncidentHistory.begin(history[0], cause, NOW)
        for event in history[1:]:
            kept.append(event, cause, NOW)
        ids.append(kept.id)
        events += len(history)
        pending.append(kept)
        if len(pending) == BATCH:
            app.record(*pending)
            pending = []
    if pending:
        app.record(*pending)
    return ids, events


def review_load(database_url: str, ids: list[UUID]) -> tuple[float, int]:
    """Review's own path: the repository reads each history's rows, decodes and folds
    (a fresh application: nothing cached, every history from the store)."""
    app = ReviewApp(database_url)
    app.find(IncidentHistory, ids[0])  # the pool's first connection
    try:
        started, events = time.perf_counter(), 0
        for history_id in ids:
            history = app.find(IncidentHistory, history_id)
            assert history is not None
            events += len(history.events)
        return time.perf_counter() - started, events
    finally:
        app.close()


def decode(state: bytes) -> None:
    """A stored payload parsed from binary protobuf (the stored head skipped)."""
    _, _, length = _HEAD.unpack_from(state, len(_BINARY))
    review_pb2.HistoryEvent.FromString(state[len(_BINARY) + _HEAD.size + length:])


def raw_each(app: ReviewApp, ids: list[UUID], decoding: bool) -> tuple[float, int]:
    """The rows as the repository reads them (a query per history), nothing folded."""
    recorder = app.recorder
    started, events = time.perf_counter(), 0
    for history_id in ids:
        for stored in recorder.select_events(history_id):
            events += 1
            if decoding:
                decode(stored.state)
    return time.perf_counter() - started, events


def raw_bulk(app: ReviewApp, ids: list[UUID], decoding: bool) -> tuple[float, int]:
    """The rows as review reads many histories (a query per 200, a result row per history),
    nothing folded."""
    started, events = time.perf_counter(), 0
    for histories in app.stored_histories([str(i) for i in ids]):
        for rows in histories:
            events += len(rows.states)
            if decoding:
                for state in rows.states:
                    decode(state)
    return time.perf_counter() - started, events


def review_bulk(app: ReviewApp, ids: list[UUID]) -> tuple[float, int]:
    """Review across incidents (EvaluateIncidents, GetCityAsOf): read, decode, fold."""
    started, events = time.perf_counter(), 0
    for history in app.replay_many([str(i) for i in ids]):
        events += len(history.events)
    return time.perf_counter() - started, events


def fold_only(histories: list[list[incident_pb2.IncidentEvent]]) -> tuple[float, int]:
    started, events = time.perf_counter(), 0
    for history in histories:
        IncidentState.replay(history)
        events += len(history)
    return time.perf_counter() - started, events


def json_parse(histories: list[list[incident_pb2.IncidentEvent]]) -> tuple[float, int]:
    """Parsing canonical JSON, as every stored event was before (json_format.ParseDict)."""
    docs = [json_format.MessageToDict(e) for h in histories for e in h]
    started = time.perf_counter()
    for doc in docs:
        json_format.ParseDict(doc, incident_pb2.IncidentEvent())
    return time.perf_counter() - started, len(docs)


def import_one(app: ReviewApp, events: int) -> tuple[float, int]:
    history = generate(DemandSpec(incidents=1, seed=5, false_alarms=0,
                                  situation_reports_per_hour=events * 1.5))[0]
    started = time.perf_counter()
    app.import_history(history, Cause(actor="bench", occurred_at=NOW), NOW)
    return time.perf_counter() - started, len(history)


def rehearse_day(incidents: int) -> tuple[float, int]:
    """A generated city day rehearsed in process: demand drawn, played through the
    Incident aggregate, the plans and the unit choice, and measured."""
    started = time.perf_counter()
    spec = DemandSpec(incidents=incidents, seed=7)
    outcome, = rehearsal.rehearse(draw_calls(spec), [rehearsal.baseline(default_fleet(spec))])
    return time.perf_counter() - started, outcome.evaluation.incidents


def rate(seconds: float, events: int) -> float:
    return events / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=1_000,
                        help="histories generated; the rest are copies under other ids")
    parser.add_argument("--import-events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--day", type=int, default=1_000, help="incidents of the city day")
    args = parser.parse_args()
    with embedded_postgres("replay") as (_, database):
        dsn = database("bench")
        # The fill writes 200 histories per transaction: on a loaded machine the client
        # can take longer than the services' 5 s between two statements of one.
        app = ReviewApp(dsn, {"POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "120"})
        assert isinstance(app.mapper, ProtoMapper)
        histories = generate(DemandSpec(incidents=min(args.distinct, args.histories)))
        started = time.perf_counter()
        ids, stored = fill(app, histories, args.histories)
        print(f"stored {len(ids)} histories, {stored} events, in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        heap.settle()  # the collector as the review service runs it, for every path measured
        raw_bulk(app, ids, decoding=True)  # warm the server's cache and the code paths
        # Interleaved rounds, the best of each kept: the machine is shared, and a burst
        # of someone else's work should not decide a ratio.
        rounds = [(raw_bulk(app, ids, False), raw_bulk(app, ids, True), review_bulk(app, ids),
                   raw_each(app, ids, False), raw_each(app, ids, True),
                   review_load(dsn, ids)) for _ in range(args.rounds)]
        best = [min(r[k] for r in rounds) for k in range(6)]
        assert {n for _, n in best} == {stored}
        fold_s, fold_n = fold_only(histories)
        json_s, json_n = json_parse(histories[:300])
        import_s, import_n = import_one(app, args.import_events)
        day_s, day_n = rehearse_day(args.day)
        app.close()
    bulk_raw, bulk_decode, bulk, each_raw, each_decode, each = (rate(*b) for b in best)
    print()
    print(f"{len(ids)} histories, {stored} events; events/s, best of {args.rounds} rounds:")
    print("  across incidents (a query per 200 histories):")
    print(f"    baseline: raw read of the rows                {bulk_raw:>10,.0f}")
    print(f"    baseline: raw read + binary protobuf decode   {bulk_decode:>10,.0f}")
    print(f"    review: read, decode, fold                    {bulk:>10,.0f}   "
          f"({bulk / bulk_decode:.2f}x raw read + decode)")
    print("  one history at a time (the repository: a query per history):")
    print(f"    baseline: raw read of the rows                {each_raw:>10,.0f}")
    print(f"    baseline: raw read + binary protobuf decode   {each_decode:>10,.0f}")
    print(f"    review: read, decode, fold                    {each:>10,.0f}   "
          f"({each / each_decode:.2f}x raw read + decode)")
    print(f"  fold alone (decoded events, no store)           {rate(fold_s, fold_n):>10,.0f}")
    print(f"  canonical JSON parse alone (the old stored form){rate(json_s, json_n):>10,.0f}")
    print(f"import of one {import_n}-event history (in process): {import_s:.2f} s")
    print(f"rehearsal of a generated city day ({day_n} incidents): {day_s:.2f} s")
    print(f"review folds {bulk:,.0f} events/s from {len(ids)} stored histories "
          f"({bulk / bulk_decode:.2f}x raw read + decode; one at a time {each:,.0f}/s, "
          f"{each / each_decode:.2f}x)")


if __name__ == "__main__":
    main()
