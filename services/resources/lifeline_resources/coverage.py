"""Coverage: a city still covered after the trucks leave.

A city sets coverage requirements as data (`LIFELINE_COVERAGE`, TOML): at least `minimum`
available units of a kind able to reach a place within a travel time. After each dispatch
and release (and every half minute, as positions move), resources counts the units that
cover each requirement. One that falls short opens a gap, recorded as an event, with a
move-up suggestion: the available unit of that kind that reaches the place first without
opening a gap where it stands. An operator accepts it (the unit's station moves there) or
declines it; a gap that closes otherwise withdraws its suggestion.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.errors import NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, meta_of, stable_id
from lifeline.resources.v1 import resources_pb2 as pb

from lifeline_resources.fleet import Fleet, FleetUnit, Point

M = pb.MoveUpStatus
#: Straight-line nearest units looked at per requirement, for covering and for moving up.
LOOK_AT = 16


@dataclass(frozen=True)
class Requirement:
    id: str
    name: str
    at: Point
    kind: str
    minimum: int
    within_seconds: int


def load_requirements(path: Path) -> list[Requirement]:
    """Read `[[requirement]]` tables; a bad one names the file, entry and field."""
    doc = tomllib.loads(path.read_text())
    out: list[Requirement] = []
    for n, entry in enumerate(doc.get("requirement", [])):
        where = f"{path.name}: requirement[{n}]"

        def field(name: str, kind: type | tuple[type, ...], entry: dict[str, Any] = entry,
                  where: str = where) -> Any:
            value = entry.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{where}.{name} is required, a {name_of(kind)}")
            return value

        at = field("at", list)
        if len(at) != 2 or not all(isinstance(v, (int, float)) for v in at) \
                or not (-90 <= at[0] <= 90 and -180 <= at[1] <= 180):
            raise ValueError(f"{where}.at must be [latitude, longitude]")
        minimum, minutes = field("minimum", int), field("within_minutes", (int, float))
        if not 1 <= minimum <= 100 or not 0 < minutes <= 120:
            raise ValueError(f"{where}: minimum is 1..100 and within_minutes above 0, ≤ 120")
        out.append(Requirement(field("id", str), str(entry.get("name", "")),
                               (float(at[0]), float(at[1])), field("kind", str), minimum,
                               round(minutes * 60)))
    if len({r.id for r in out}) != len(out):
        raise ValueError(f"{path.name}: requirement ids must be unique")
    return out


def covering(fleet: Fleet, requirement: Requirement, now: datetime,
             exclude: Collection[str] = ()) -> list[tuple[FleetUnit, float]]:
    """The available units of the kind that reach the place in time, fastest first."""
    near, _ = fleet.nearest(requirement.kind, requirement.at,
                            max(LOOK_AT, 2 * requirement.minimum), now, exclude)
    seconds = fleet.travel.seconds(requirement.kind, [c.origin for c in near], requirement.at)
    return sorted(((c.unit, s) for c, s in zip(near, seconds, strict=True)
                   if s <= requirement.within_seconds), key=lambda pair: pair[1])


def move_up(fleet: Fleet, requirement: Requirement, others: Sequence[Requirement],
            now: datetime, declined: Collection[str] = ()
            ) -> tuple[FleetUnit, Point, float] | None:
    """The unit to move to the requirement's place: available, of the kind, not already
    covering it, not one whose leaving opens another gap; the one that gets there first."""
    here = {u.id for u, _ in covering(fleet, requirement, now)}
    needed_elsewhere: set[str] = set()
    for other in others:
        if other.id != requirement.id and other.kind == requirement.kind:
            units = covering(fleet, other, now)
            if len(units) <= other.minimum:
                needed_elsewhere.update(u.id for u, _ in units)
    near, _ = fleet.nearest(requirement.kind, requirement.at, LOOK_AT, now,
                            {*here, *needed_elsewhere, *declined})
    seconds = fleet.travel.seconds(requirement.kind, [c.origin for c in near], requirement.at)
    ranked = sorted((s, c.unit.id, c) for c, s in zip(near, seconds, strict=True)
                    if math.isfinite(s))
    if not ranked:
        return None
    eta, _, best = ranked[0]
    return best.unit, best.origin, eta


def name_of(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "string", "int": "whole number", "float": "number",
                        "list": "list"}.get(k.__name__, k.__name__) for k in kinds)


def watch_id_of(requirement_id: str) -> UUID:
    return stable_id("coverage", requirement_id)


def point(p: Point) -> common_pb2.GeoPoint:
    return common_pb2.GeoPoint(lat=p[0], lon=p[1])


class CoverageWatch(ProtoAggregate):
    """One requirement's coverage: its gaps and the move-ups suggested to close them."""

    EVENT_TYPE = pb.CoverageEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        at = meta_of(wrapper).occurred_at
        if field == "gap_opened":
            if not hasattr(self, "view"):
                self.view = pb.Coverage()
                self.suggested = 0
                self.declined: set[str] = set()
            self.view.CopyFrom(event.requirement)
            self.view.gap = True
            self.view.gap_since.CopyFrom(at)
            self.view.ClearField("move_up")
            self.declined = set()
        elif field == "gap_closed":
            self.view.gap = False
            self.view.covering = event.covering
            self.view.ClearField("gap_since")
        elif field == "move_up_suggested":
            self.suggested += 1
            self.view.move_up.CopyFrom(event.move_up)
        elif field == "move_up_decided":
            self.view.move_up.status = event.status
            self.view.move_up.decided_by = meta_of(wrapper).actor
            self.view.move_up.reason = event.reason
            if event.status == M.MOVE_UP_STATUS_DECLINED:
                self.declined.add(self.view.move_up.unit_id)

    @property
    def pending(self) -> pb.MoveUp | None:
        move = self.view.move_up
        return move if move.id and move.status == M.MOVE_UP_STATUS_SUGGESTED else None

    @classmethod
    def check(cls, found: CoverageWatch | None, requirement: Requirement, count: int,
              suggest: tuple[FleetUnit, Point, float] | None, cause: Cause, now: datetime
              ) -> CoverageWatch | None:
        """Record what changed: a gap opened or closed, a move-up suggested or withdrawn."""
        gap = count < requirement.minimum
        if found is None:
            if not gap:
                return None
            found = cls.start(watch_id_of(requirement.id), "gap_opened",
                              pb.CoverageGapOpened(requirement=as_view(requirement, count)),
                              cause, now)
        elif gap and not found.view.gap:
            found.record("gap_opened", pb.CoverageGapOpened(
                requirement=as_view(requirement, count)), cause, now)
        elif not gap and found.view.gap:
            pending = found.pending
            if pending is not None:
                found.record("move_up_decided", pb.MoveUpDecided(
                    requirement_id=requirement.id, move_up_id=pending.id,
                    status=M.MOVE_UP_STATUS_WITHDRAWN, reason="the gap closed"), cause, now)
            found.record("gap_closed", pb.CoverageGapClosed(requirement_id=requirement.id,
                                                            covering=count), cause, now)
            return found
        if gap and found.pending is None and suggest is not None:
            unit, origin, eta = suggest
            move = pb.MoveUp(id=f"{requirement.id}/{found.suggested + 1}", unit_id=unit.id,
                             to=point(requirement.at), eta_seconds=round(eta, 1),
                             status=M.MOVE_UP_STATUS_SUGGESTED)
            getattr(move, "from").CopyFrom(point(origin))  # `from` is a Python keyword
            found.record("move_up_suggested", pb.MoveUpSuggested(
                requirement_id=requirement.id, move_up=move), cause, now)
        return found

    def decide(self, move_up_id: str, status: int, reason: str, cause: Cause,
               now: datetime) -> pb.MoveUp:
        pending = self.pending
        if pending is None or pending.id != move_up_id:
            raise RuleViolation("move-up-pending", f"move-up {move_up_id} is not waiting for "
                                "a decision (decided, withdrawn or superseded)")
        self.record("move_up_decided", pb.MoveUpDecided(
            requirement_id=self.view.requirement_id, move_up_id=move_up_id,
            status=status, reason=reason), cause, now)  # type: ignore[arg-type]
        return self.view.move_up


def as_view(requirement: Requirement, count: int) -> pb.Coverage:
    return pb.Coverage(requirement_id=requirement.id, name=requirement.name,
                       at=point(requirement.at), unit_kind=requirement.kind,
                       minimum=requirement.minimum, within_seconds=requirement.within_seconds,
                       covering=count)


def requirement_of(move_up_id: str, requirements: Sequence[Requirement]) -> Requirement:
    requirement_id = move_up_id.rpartition("/")[0]
    for requirement in requirements:
        if requirement.id == requirement_id:
            return requirement
    raise NotFound("move-up", move_up_id)
