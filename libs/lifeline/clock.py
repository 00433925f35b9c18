"""The one clock every time-dependent rule reads.

Production uses the system clock; tests, demos and what-if replays use a simulation clock
so that hours of field time pass in milliseconds with the same code.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulationClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulation clock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = when


class FieldClock:
    """Field time for rules that fire on deadlines, judged in field time in every mode.

    In production an aggregate's field clock runs on from its latest reported step at the
    service clock's pace: `offset` is that step's field time minus the service time it was
    recorded at, so a history told in past field time meets its deadlines in field time
    rather than being overdue at once. In drills and what-if replays (`observed`) it is the
    latest field time the service has been told of by the commands it received, so a
    deadline passes when the scenario's time passes it, however fast the scenario plays.
    """

    def __init__(self, observed: bool = False) -> None:
        self.observed = observed
        self._latest: datetime | None = None
        self._lock = threading.Lock()

    def observe(self, when: datetime) -> None:
        if self.observed:
            with self._lock:
                if self._latest is None or when > self._latest:
                    self._latest = when

    def now(self, offset: timedelta, service_now: datetime) -> datetime | None:
        """The field time now of an aggregate whose latest reported step ran `offset` ahead
        of the service clock; None in a drill that has not started yet."""
        if not self.observed:
            return service_now + offset
        with self._lock:
            return self._latest
