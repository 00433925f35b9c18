"""Sandbox rehearsal (预案沙盘推演): recorded or generated demand played again, in process,
against the plans and unit layout in force and against changed ones, measured the same way
as real incidents, side by side.

Each variant gets the same calls and, call by call, the same random draws (turnout,
acknowledgements), so a difference between two columns is what the variant changed.
Nothing live is touched: no store, no bus, no service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lifeline.incident.state import IncidentState
from lifeline.plans import PlanLibrary, default_library
from lifeline.review.v1 import review_pb2 as pb

from lifeline_review.demand import Call, Fleet, play
from lifeline_review.domain import evaluate
from lifeline_review.measures import Case, summarize


@dataclass(frozen=True)
class Variant:
    name: str
    fleet: Fleet
    plans: PlanLibrary


@dataclass(frozen=True)
class Outcome:
    variant: Variant
    evaluation: pb.IncidentsEvaluation

    def phase(self, name: str) -> pb.PhaseStats:
        return next(p for p in self.evaluation.phases if p.phase == name)

    @property
    def units_sent(self) -> int:
        return sum(u.assigned for u in self.evaluation.units)

    @property
    def units_short(self) -> int:
        return sum(u.short for u in self.evaluation.units)

    @property
    def coverage(self) -> float:
        """Share of the units the plans asked for that were sent."""
        asked = self.units_sent + self.units_short
        return self.units_sent / asked if asked else 1.0


def variant(name: str, base: Variant, spec: str) -> Variant:
    """A variant from `units=FILE`, `plans=DIR` or both (comma-separated); what it does
    not name is the baseline's."""
    fleet, plans = base.fleet, base.plans
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if key == "units" and value:
            fleet = Fleet.load(Path(value))
        elif key == "plans" and value:
            plans = PlanLibrary.load(Path(value))
        else:
            raise ValueError(f"--variant {spec!r}: expected units=FILE and/or plans=DIR")
    return Variant(name, fleet, plans)


def rehearse(calls: Sequence[Call], variants: Sequence[Variant], speed_kmh: float = 30.0,
             include_incidents: bool = False) -> list[Outcome]:
    outcomes = []
    for v in variants:
        cases = []
        for history in play(calls, v.fleet, v.plans, speed_kmh):
            state = IncidentState.replay(history)
            cases.append(Case(evaluate(state.id, history, state), state))
        outcomes.append(Outcome(v, summarize(cases, include_incidents)))
    return outcomes


def baseline(fleet: Fleet, plans: PlanLibrary | None = None) -> Variant:
    return Variant("baseline", fleet, plans or default_library())
