"""The simulation clock moves only when told to, and only forwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from lifeline.clock import SimulationClock, SystemClock

START = datetime(2024, 7, 1, 6, 0, tzinfo=UTC)


def test_it_starts_where_it_is_set_and_stands_still() -> None:
    clock = SimulationClock(START)
    assert clock.now() == START
    assert clock.now() == START


def test_advance_moves_it_and_returns_the_new_time() -> None:
    clock = SimulationClock(START)
    assert clock.advance(timedelta(minutes=12)) == START + timedelta(minutes=12)
    assert clock.advance(timedelta(hours=5, minutes=48)) == START + timedelta(hours=6)
    assert clock.now() == START + timedelta(hours=6)
    assert clock.advance(timedelta(0)) == START + timedelta(hours=6)


def test_six_hours_of_field_time_pass_at_once() -> None:
    clock = SimulationClock(START)
    for _ in range(360):
        clock.advance(timedelta(minutes=1))
    assert clock.now() - START == timedelta(hours=6)


def test_it_does_not_go_backwards() -> None:
    clock = SimulationClock(START)
    clock.advance(timedelta(hours=1))
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="backwards"):
        clock.set(START)
    assert clock.now() == START + timedelta(hours=1)


def test_set_moves_it_forward_or_keeps_it() -> None:
    clock = SimulationClock(START)
    clock.set(START)
    assert clock.now() == START
    clock.set(START + timedelta(days=1))
    assert clock.now() == START + timedelta(days=1)


def test_it_keeps_the_timezone_it_is_given() -> None:
    shanghai = timezone(timedelta(hours=8))
    clock = SimulationClock(datetime(2024, 7, 1, 14, 0, tzinfo=shanghai))
    assert clock.now() == START + timedelta(hours=0)  # 14:00+08:00 is 06:00 UTC
    assert clock.now().utcoffset() == timedelta(hours=8)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulationClock(datetime(2024, 7, 1, 6, 0))


def test_the_system_clock_is_aware_utc_now() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert before <= now <= datetime.now(UTC)
