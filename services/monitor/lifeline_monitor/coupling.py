"""Coupled risks as data, in the style of the plans: one TOML file per rule under
coupled_risks/, each naming hazards and levels across a cell and its neighbours (H3 rings)
and the compound warning they make together, with the reason beside it.

A rule holds in a cell (its anchor) when the cell has every asset the rule requires (from the
loaded grid) and, for each condition, some warning on the condition's hazard at the
condition's level or worse is active within `within` rings of the cell (0: the cell itself).
Its compound warning is then raised on the rule's hazard in that cell, at the rule's level or,
when every condition is met at a worse level, at the least of those (a picture is as severe
as its weakest part, never below the rule's floor); it names the warnings it came from
(`sources`). When the rule no longer holds, the compound warning is cleared. Dispatch treats
it as any warning.

Monitor follows its own warning events (a consumer of its own stream, exactly once like any
other): each raised, updated or cleared warning re-evaluates the rules that mention its
hazard in every cell it could be a condition for.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Recording
from google.protobuf.message import Message
from lifeline import settings as environment
from lifeline.common.v1 import common_pb2
from lifeline.edge import NAME
from lifeline.events import Cause, event_of, from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import Taking

from lifeline_monitor import grid
from lifeline_monitor.domain import HazardWatch, watch_id_of

if TYPE_CHECKING:
    from lifeline.runtime import Runtime
    from lifeline.store import ServiceApplication

L = common_pb2.WarningLevel
#: The shipped rules: package data (shipped/coupled_risks links to coupled_risks/).
RULES_DIR = Path(__file__).resolve().parent / "shipped" / "coupled_risks"
LEVELS = {"blue": L.WARNING_LEVEL_BLUE, "yellow": L.WARNING_LEVEL_YELLOW,
          "orange": L.WARNING_LEVEL_ORANGE, "red": L.WARNING_LEVEL_RED}
#: How far a condition may reach: three rings (37 cells, about 3.5 km across at resolution 8).
MAX_RINGS = 3
WARNING_SUBJECTS = ("lifeline.monitor.warning.>",)
WARNING_HANDLED = ("lifeline.monitor.warning.raised", "lifeline.monitor.warning.updated",
                   "lifeline.monitor.warning.acknowledged", "lifeline.monitor.warning.cleared")
#: What else follows monitor's own warnings on the same consumer (escalation chains): given
#: the event's field and message, the aggregates to record with the coupled-risk changes.
Also = Callable[[str, Any], Sequence[Any]]


class RuleError(ValueError):
    """A rule file refused: which file, which field, what is wrong."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}")


@dataclass(frozen=True)
class Condition:
    hazard: str
    level: int
    within: int


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    hazard: str
    level: int
    reason: str
    requires_assets: frozenset[str]
    conditions: tuple[Condition, ...]


def load_rules(directory: Path | None = None) -> tuple[Rule, ...]:
    """Every rule under the directory (LIFELINE_COUPLED_RISKS, else coupled_risks/)."""
    folder = directory or environment.load().coupled_risks or RULES_DIR
    rules = tuple(load_rule(path) for path in sorted(folder.glob("*.toml")))
    produced = {r.hazard for r in rules}
    for rule in rules:
        for index, c in enumerate(rule.conditions):
            if c.hazard in produced:
                # Compound warnings of compound warnings could feed back into each other.
                raise RuleError(folder / f"{rule.id}.toml", f"conditions[{index}].hazard",
                                f"{c.hazard!r} is itself a coupled risk's hazard")
    return rules


def load_rule(path: Path) -> Rule:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise RuleError(path, "(file)", str(error)) from None
    known = {"id", "title", "hazard", "level", "reason", "requires_assets", "conditions"}
    for key in data:
        if key not in known:
            raise RuleError(path, key, f"unknown key; a rule has {', '.join(sorted(known))}")
    rule_id = _name(path, data, "id")
    if rule_id != path.stem:
        raise RuleError(path, "id", f"must equal the file name {path.stem!r}")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise RuleError(path, "reason", "say why these risks together make the warning")
    assets = data.get("requires_assets", [])
    if not isinstance(assets, list) or not all(isinstance(a, str) and NAME.match(a)
                                               for a in assets):
        raise RuleError(path, "requires_assets", "a list of asset names")
    raw = data.get("conditions")
    if not isinstance(raw, list) or not raw or not all(isinstance(c, dict) for c in raw):
        raise RuleError(path, "conditions", "at least one [[conditions]] table")
    hazard = _name(path, data, "hazard")
    conditions = []
    for index, entry in enumerate(raw):
        where = f"conditions[{index}]"
        for key in entry:
            if key not in ("hazard", "level", "within"):
                raise RuleError(path, f"{where}.{key}", "unknown key; a condition has hazard, "
                                                        "level and within")
        within = entry.get("within", 0)
        if not isinstance(within, int) or isinstance(within, bool) or \
                not 0 <= within <= MAX_RINGS:
            raise RuleError(path, f"{where}.within", f"rings from the cell, 0 to {MAX_RINGS}")
        condition = Condition(_name(path, entry, "hazard", where), _level(path, entry, where),
                              within)
        if condition.hazard == hazard:
            raise RuleError(path, f"{where}.hazard", "a rule cannot feed on its own warning")
        conditions.append(condition)
    title = data.get("title", "")
    if not isinstance(title, str):
        raise RuleError(path, "title", "a string")
    return Rule(rule_id, title, hazard, _level(path, data, ""), reason.strip(),
                frozenset(assets), tuple(conditions))


def _name(path: Path, data: dict[str, Any], key: str, where: str = "") -> str:
    value = data.get(key)
    field = f"{where}.{key}" if where else key
    if not isinstance(value, str) or not NAME.match(value):
        raise RuleError(path, field, "a name: letters, digits, '_', '.', ':' and '-'")
    return value


def _level(path: Path, data: dict[str, Any], where: str) -> int:
    value = data.get("level")
    if value not in LEVELS:
        raise RuleError(path, f"{where}.level" if where else "level",
                        f"one of {', '.join(LEVELS)}")
    return LEVELS[value]


class Picture:
    """Active warnings and cell assets, each looked up once per evaluation."""

    def __init__(self, app: ServiceApplication) -> None:
        self.app = app

    @functools.cache  # noqa: B019 - one Picture per evaluation, dropped after it
    def warning(self, cell: str, hazard: str) -> pb.Warning | None:
        watch = self.app.find(HazardWatch, watch_id_of(cell, hazard))
        return watch.active if watch is not None else None

    @functools.cache  # noqa: B019 - as above
    def assets(self, cell: str) -> frozenset[str]:
        return frozenset(grid.assets_of(self.app, cell))


def assess(rule: Rule, cell: str, picture: Picture) -> tuple[int, list[str]]:
    """The compound warning's level in this cell (NONE when the rule does not hold) and the
    warnings it comes from."""
    if not rule.requires_assets <= picture.assets(cell):
        return L.WARNING_LEVEL_NONE, []
    met: list[int] = []
    sources: set[str] = set()
    for condition in rule.conditions:
        found = [w for c in grid.ring(cell, condition.within)
                 if (w := picture.warning(c, condition.hazard)) is not None
                 and w.level >= condition.level]
        if not found:
            return L.WARNING_LEVEL_NONE, []
        met.append(max(w.level for w in found))
        sources.update(w.id for w in found)
    return max(rule.level, min(met)), sorted(sources)


def anchors(rule: Rule, hazard: str, cell: str) -> set[str]:
    """The cells where a warning on hazard in cell could count for the rule."""
    found: set[str] = set()
    for condition in rule.conditions:
        if condition.hazard == hazard:
            found.update(grid.ring(cell, condition.within))
    return found


def warning_moved(app: ServiceApplication, rules: Sequence[Rule], hazard: str, cell: str,
                  cause: Cause, now: Any, taking: Taking | None = None,
                  also: Sequence[Any] = ()) -> list[Recording]:
    """A warning on hazard in cell was raised, moved or cleared: bring the compound
    warnings it could feed up to date (recorded with `also`)."""
    if not grid.is_cell(cell):
        return app.record(*also, taking=taking)
    picture = Picture(app)
    changed: list[HazardWatch] = []
    for rule in rules:
        for anchor in sorted(anchors(rule, hazard, cell)):
            level, sources = assess(rule, anchor, picture)
            watch = app.find(HazardWatch, watch_id_of(anchor, rule.hazard))
            step = Cause(actor=cause.actor, occurred_at=cause.occurred_at,
                         reason=f"coupled risk {rule.id}: {rule.reason}",
                         correlation_id=cause.correlation_id, causation_id=cause.causation_id)
            if watch is None:
                if level == L.WARNING_LEVEL_NONE:
                    continue
                changed.append(HazardWatch.open_compound(
                    anchor, rule.hazard, rule.id, level, sources, grid.centre_of(anchor),
                    grid.responsible_for(app, anchor, rule.hazard), step, now))
            elif watch.compound_moved(rule.id, level, sources, grid.centre_of(anchor),
                                      lambda a=anchor, h=rule.hazard:  # type: ignore[misc]
                                      grid.responsible_for(app, a, h), step, now):
                changed.append(watch)
    return app.record(*changed, *also, taking=taking)


def subscribe(rt: Runtime, app: ServiceApplication, rules: Sequence[Rule],
              also: Also | None = None) -> None:
    """Follow monitor's own warnings; compound warnings are written with the tracking of the
    warning event that moved them, so a redelivery changes nothing."""
    watched = {c.hazard for rule in rules for c in rule.conditions}

    async def on_warning(subject: str, wrapper: Message, taking: Taking) -> None:
        field, event = event_of(wrapper)
        meta = event.meta
        parts = event.warning_id.split("/")
        hazard, cell = (parts[1], parts[0]) if len(parts) == 3 else ("", "")
        # An acknowledgement moves no level: no rule to judge again.
        judged = rules if hazard in watched and field != "acknowledged" else ()
        cause = Cause(actor="monitor", occurred_at=from_timestamp(meta.occurred_at),
                      correlation_id=event.warning_id,
                      causation_id=f"{meta.aggregate_id}/{meta.sequence}")
        await rt.write(lambda: (None, warning_moved(
            app, judged, hazard, cell, cause, rt.now(), taking,
            also(field, event) if also is not None else ())))

    rt.consume("monitor", WARNING_SUBJECTS, [pb.WarningEvent], on_warning, WARNING_HANDLED)
