"""Alarm rules for one sensor, with the semantics operators know (ISA-18.2, OPC UA Part 9
alarms, Prometheus `for`), as plain values: no protobuf, no clock, no I/O.

A sensor's level is judged reading by reading in field time (the readings' measured_at):

- thresholds: the colour whose threshold the value has reached (in the direction of
  worsening);
- deadband: a level is left only once the value is back past its threshold by the deadband,
  so a value chattering around a threshold holds its level;
- rate of change: a level from how fast the value worsens (per hour, over `rate_window`),
  whatever the value itself;
- on-delay: a higher level is taken only once the value has stood at it for `on_delay`;
- off-delay: a lower level is taken only once the value has stood below for `off_delay`.

Valid range, staleness and shelving are judged by the engine around these rules.
"""

from __future__ import annotations

import math
import tomllib
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

NONE, BLUE, YELLOW, ORANGE, RED = 1, 2, 3, 4, 5  # lifeline.common.v1.WarningLevel numbers
COLOURS = (BLUE, YELLOW, ORANGE, RED)
#: Rate of change needs readings spanning at least this share of its window.
RATE_MIN_SPAN = 1 / 6


@dataclass(frozen=True, slots=True)
class Rules:
    """One sensor's rules. Times are seconds of field time; 0 turns a rule off."""

    thresholds: tuple[float, float, float, float]  # blue, yellow, orange, red
    higher_is_worse: bool = True
    deadband: float = 0.0
    on_delay: float = 0.0
    off_delay: float = 0.0
    #: (units per hour of worsening, level), any order.
    rate: tuple[tuple[float, int], ...] = ()
    rate_window: float = 3600.0
    expected_interval: float = 0.0
    valid_min: float = -math.inf
    valid_max: float = math.inf

    @property
    def sign(self) -> float:
        """Values are judged multiplied by this, so that bigger is always worse."""
        return 1.0 if self.higher_is_worse else -1.0

    def valid(self, value: float) -> bool:
        return self.valid_min <= value <= self.valid_max

    def threshold_level(self, value: float, current: int = NONE) -> int:
        """The colour the value stands at. Levels up to `current` are held until the value
        is back past their threshold by the deadband."""
        x, sign, level = value * self.sign, self.sign, NONE
        for colour, limit in zip(COLOURS, self.thresholds, strict=True):
            bound = limit * sign
            if x >= bound or (colour <= current and x > bound - self.deadband):
                level = colour
        return level

    def rate_level(self, per_hour: float) -> int:
        """The level a rate of worsening (units per hour) alone stands at."""
        level = NONE
        for limit, colour in self.rate:
            if per_hour >= limit and colour > level:
                level = colour
        return level


@dataclass(slots=True)
class SensorState:
    """What the rules remember of one sensor between readings (in memory only)."""

    rules: Rules
    #: The level in force.
    level: int = NONE
    #: Field time of the last reading applied (a reading before it is late).
    last_at: float = -math.inf
    #: On-delay: since when the value has stood at least at each colour (index colour-2).
    since: list[float | None] = field(default_factory=lambda: [None] * 4)
    #: Off-delay: since when the value has stood below the level in force.
    below_since: float | None = None
    #: (field time, value * sign) of recent readings, for rate-of-change rules.
    history: deque[tuple[float, float]] = field(default_factory=deque)
    # The steady band, in the value's own units: while no timer runs, a valid value strictly
    # between lo and hi leaves the level as it is, so a steady reading costs two
    # comparisons. Empty (lo > hi) while a timer or a rate rule needs every reading.
    lo: float = -math.inf
    hi: float = math.inf

    def __post_init__(self) -> None:
        self._settle()

    def copy(self) -> SensorState:
        return SensorState(self.rules, self.level, self.last_at, list(self.since),
                           self.below_since, deque(self.history))

    def steady(self, value: float) -> bool:
        """True when the value is valid and certainly leaves everything as it is (the fast
        path)."""
        return self.lo < value < self.hi

    def observe(self, value: float, at: float) -> int:
        """Apply a valid, in-order reading; the new level when it moved, else 0."""
        rules = self.rules
        self.last_at = at
        target = rules.threshold_level(value, self.level)
        if rules.rate:
            target = max(target, self._rate_level(value * rules.sign, at))
        new = self.level
        for index, colour in enumerate(COLOURS):
            if target < colour:
                self.since[index] = None
            elif self.since[index] is None:
                self.since[index] = at
        if target > self.level:
            self.below_since = None
            for colour in range(target, self.level, -1):
                started = self.since[colour - BLUE]
                if started is not None and at - started >= rules.on_delay:
                    new = colour
                    break
        elif target < self.level:
            if self.below_since is None:
                self.below_since = at
            if at - self.below_since >= rules.off_delay:
                new, self.below_since = target, None
        else:
            self.below_since = None
        moved = new != self.level
        self.level = new
        self._settle()
        return new if moved else 0

    def _rate_level(self, x: float, at: float) -> int:
        history, window = self.history, self.rules.rate_window
        history.append((at, x))
        while len(history) > 1 and history[0][0] < at - window:
            history.popleft()
        first_at, first_x = history[0]
        span = at - first_at
        if span < window * RATE_MIN_SPAN:
            return NONE
        return self.rules.rate_level((x - first_x) / span * 3600.0)

    def _settle(self) -> None:
        rules, level = self.rules, self.level
        timers = self.below_since is not None or any(s is not None for s in self.since[level - 1:])
        if rules.rate or timers:
            self.lo, self.hi = math.inf, -math.inf
            return
        # In worse-is-bigger terms (value * sign): up to the next threshold, down to this
        # level's threshold less the deadband; both strictly.
        sign = rules.sign
        up = rules.thresholds[level - 1] * sign if level < RED else math.inf
        down = rules.thresholds[level - 2] * sign - rules.deadband if level > NONE else -math.inf
        lo, hi = (down, up) if sign > 0 else (-up, -down)
        # Within the valid range, which is inclusive: v > nextafter(min, -inf) is v >= min.
        self.lo = max(lo, math.nextafter(rules.valid_min, -math.inf))
        self.hi = min(hi, math.nextafter(rules.valid_max, math.inf))


# ---- defaults per sensor kind (data: kinds.toml, shipped with the package) ----


@dataclass(frozen=True)
class KindDefaults:
    """What a kind of sensor gets where its registration leaves a rule out."""

    valid_range: dict[str, tuple[float, float]]  # per unit of measure
    deadband: dict[str, float]  # per unit of measure
    on_delay: float = 0.0
    off_delay: float = 0.0
    expected_interval: float = 0.0


#: The kinds.toml table every kind starts from.
EVERY_KIND = "*"


@cache
def kind_defaults() -> dict[str, KindDefaults]:
    text = resources.files("lifeline_monitor").joinpath("kinds.toml").read_text("utf-8")
    specs = tomllib.loads(text)
    base = specs.get(EVERY_KIND, {})
    return {kind: _defaults(kind, {**base, **spec}) for kind, spec in specs.items()}


def defaults_for(kind: str) -> KindDefaults:
    """What a sensor of kind gets where its registration leaves a rule out."""
    known = kind_defaults()
    return known.get(kind) or known[EVERY_KIND]


def _defaults(kind: str, spec: dict[str, Any]) -> KindDefaults:
    ranges = {unit: (float(low), float(high))
              for unit, (low, high) in spec.get("valid_range", {}).items()}
    if any(low >= high for low, high in ranges.values()):
        raise ValueError(f"kinds.toml: {kind}: a valid range must have min < max")
    return KindDefaults(
        valid_range=ranges,
        deadband={unit: float(v) for unit, v in spec.get("deadband", {}).items()},
        on_delay=float(spec.get("on_delay_seconds", 0)),
        off_delay=float(spec.get("off_delay_seconds", 0)),
        expected_interval=float(spec.get("expected_interval_seconds", 0)))
