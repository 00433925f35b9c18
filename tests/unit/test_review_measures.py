"""Measures across incidents: nearest-rank percentiles, the filters, and the bound on the
evaluations one answer carries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from lifeline.events import from_timestamp
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2 as ipb
from lifeline.review.v1 import review_pb2 as pb
from lifeline_review import measures
from lifeline_review.demand import DemandSpec, generate
from lifeline_review.domain import evaluate
from lifeline_review.measures import Case, IncidentFilter, percentile, summarize


@pytest.mark.parametrize(("values", "q", "expected"), [
    (list(range(1, 11)), 0.9, 9), (list(range(1, 11)), 0.5, 5), (list(range(1, 11)), 1.0, 10),
    ([7.0], 0.9, 7.0), (list(range(1, 21)), 0.9, 18), ([3, 1, 2], 0.5, 2),
])
def test_percentiles_are_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    out = []
    for history in generate(DemandSpec(incidents=120, seed=21)):
        state = IncidentState.replay(history)
        out.append(Case(evaluate(state.id, history, state), state))
    return out


def test_filters_admit_what_they_name(cases: list[Case]) -> None:
    views = [c.view for c in cases]
    opened = sorted(from_timestamp(v.opened_at) for v in views)
    middle = opened[len(opened) // 2]
    checks = {
        IncidentFilter(hazards=frozenset({"gas_leak"})):
            lambda v: (v.hazard_type or v.hazard) == "gas_leak",
        IncidentFilter(grades=frozenset({ipb.GRADE_III})): lambda v: v.grade == ipb.GRADE_III,
        IncidentFilter(opened_from=middle): lambda v: from_timestamp(v.opened_at) >= middle,
        IncidentFilter(opened_before=middle + timedelta(seconds=1), grid_cells=frozenset(
            {views[0].grid_cell})): lambda v: v.grid_cell == views[0].grid_cell
        and from_timestamp(v.opened_at) <= middle,
        IncidentFilter(origin=pb.HISTORY_ORIGIN_IMPORTED): lambda v: False,
    }
    for only, expected in checks.items():
        admitted = [v.id for v in views if only.admits(v, imported=False)]
        assert admitted == [v.id for v in views if expected(v)], only
        assert admitted or only.origin == pb.HISTORY_ORIGIN_IMPORTED


def test_within_target_counts_each_incident_against_its_own_plan(cases: list[Case]) -> None:
    e = summarize(cases)
    reached = [c.evaluation for c in cases if c.evaluation.HasField("response_time")
               and c.evaluation.response_time_target_minutes]
    assert e.with_target == len(reached)
    assert e.within_target == sum(
        r.response_time.ToTimedelta() <= timedelta(minutes=r.response_time_target_minutes)
        for r in reached)
    assert e.incidents == len(cases) == sum(c.incidents for c in e.cells)


def test_an_answer_carries_at_most_so_many_evaluations(
        cases: list[Case], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measures, "MAX_EVALUATIONS", 50)
    e = summarize(cases, include_incidents=True)
    assert len(e.evaluations) == 50 and e.evaluations_left_out == len(cases) - 50
    assert not summarize(cases).evaluations
