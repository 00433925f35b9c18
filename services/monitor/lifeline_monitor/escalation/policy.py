"""Escalation policies: the steps, parties, channels and deadlines of `escalation.toml`,
read and checked."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from lifeline.common.v1 import common_pb2

from lifeline_monitor.rosters import POST, PREFIX

L = common_pb2.WarningLevel
COLOURS = {"blue": L.WARNING_LEVEL_BLUE, "yellow": L.WARNING_LEVEL_YELLOW,
           "orange": L.WARNING_LEVEL_ORANGE, "red": L.WARNING_LEVEL_RED}
ROLES = ("grid_officer", "duty_officer", "departments")
CHANNELS = ("app", "sms", "phone", "email", "radio")
MAX_REPEAT = 5


class PolicyError(ValueError):
    """A policy file refused: which field, what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"escalation policies: {where}: {problem}")


@dataclass(frozen=True)
class Step:
    notify: tuple[str, ...]
    channel: str
    #: Minutes to wait for an acknowledgement after this step; None: the colour's deadline.
    delay: float | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    hazards: frozenset[str]
    steps: tuple[Step, ...]
    repeat: int


@dataclass(frozen=True)
class Policies:
    #: Minutes to acknowledge per colour; a colour missing has no deadline.
    deadlines: dict[int, float]
    policies: tuple[Policy, ...]

    def for_hazard(self, hazard: str) -> Policy:
        for policy in self.policies:
            if hazard in policy.hazards:
                return policy
        for policy in self.policies:
            if "*" in policy.hazards:
                return policy
        return self.policies[0]

    def by_id(self, policy_id: str) -> Policy:
        for policy in self.policies:
            if policy.id == policy_id:
                return policy
        return self.policies[0]

    def wait(self, policy: Policy, step: int, level: int) -> timedelta | None:
        """How long step (1-based) waits for an acknowledgement; None: no deadline."""
        delay = policy.steps[step - 1].delay
        if delay is None:
            delay = self.deadlines.get(level)
        return None if delay is None else timedelta(minutes=delay)


def load_policies(path: Path | None = None) -> Policies:
    """The policies shipped with monitor (or those in path), checked."""
    text = path.read_text() if path else \
        resources.files("lifeline_monitor").joinpath("escalation.toml").read_text()
    return parse_policies(tomllib.loads(text))


def parse_policies(data: dict[str, Any]) -> Policies:
    deadlines: dict[int, float] = {}
    for colour, minutes in data.get("deadlines", {}).items():
        if colour not in COLOURS:
            raise PolicyError(f"deadlines.{colour}", f"not a colour ({', '.join(COLOURS)})")
        if not isinstance(minutes, int | float) or not 0 < minutes <= 24 * 60:
            raise PolicyError(f"deadlines.{colour}", "minutes, more than 0, at most a day")
        deadlines[COLOURS[colour]] = float(minutes)
    policies = []
    for index, raw in enumerate(data.get("policies", [])):
        where = f"policies[{index}]"
        steps = []
        for number, step in enumerate(raw.get("steps", [])):
            here = f"{where}.steps[{number}]"
            notify = tuple(step.get("notify", []))
            if not notify:
                raise PolicyError(f"{here}.notify", "name at least one party")
            for party in notify:
                if party not in ROLES and not (party.startswith("party:") and party[6:]) \
                        and not (party.startswith(PREFIX) and POST.match(party[len(PREFIX):])):
                    raise PolicyError(f"{here}.notify", f"{party!r} is not one of "
                                                        f"{', '.join(ROLES)}, party:<id> or "
                                                        "post:<area>/<name>")
            if step.get("channel") not in CHANNELS:
                raise PolicyError(f"{here}.channel", f"one of {', '.join(CHANNELS)}")
            delay = step.get("delay")
            if delay is not None and (not isinstance(delay, int | float) or delay <= 0):
                raise PolicyError(f"{here}.delay", "minutes, more than 0")
            steps.append(Step(notify, step["channel"], delay))
        repeat = raw.get("repeat", 0)
        if not isinstance(repeat, int) or not 0 <= repeat <= MAX_REPEAT:
            raise PolicyError(f"{where}.repeat", f"0 to {MAX_REPEAT}")
        if not raw.get("id") or not steps:
            raise PolicyError(where, "needs an id and at least one step")
        policies.append(Policy(raw["id"], frozenset(raw.get("hazards", ["*"])), tuple(steps),
                               repeat))
    if not policies:
        raise PolicyError("policies", "at least one")
    return Policies(deadlines, tuple(policies))

