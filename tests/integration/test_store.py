"""The event store against a real PostgreSQL: a write far larger than a socket buffer, alone
or as many events at once, commits in well under a second and leaves the table free for the
next writer (psycopg's pipeline mode deadlocked on such writes, holding the table's lock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor.application import MonitorApp
from lifeline_monitor.domain import Sensor

pytestmark = pytest.mark.integration
NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def app(database_url: str) -> Iterator[MonitorApp]:
    application = MonitorApp(database_url)
    yield application
    application.close()


def sensor(sensor_id: str, unit: str = "mm/h") -> Sensor:
    return Sensor.register(pb.RegisterSensorRequest(
        id=sensor_id, kind="rainfall", hazard="urban_flooding", unit_of_measure=unit,
        location=common_pb2.GeoPoint(lat=31.2, lon=121.4),
        thresholds=pb.Thresholds(blue=1, yellow=2, orange=3, red=4),
        direction=pb.DIRECTION_HIGHER_IS_WORSE), Cause("test", NOW), NOW)


def timed(step: object) -> float:
    started = time.monotonic()
    assert callable(step)
    step()
    return time.monotonic() - started


def test_a_one_mebibyte_event_commits_and_the_next_write_is_not_held_up(
        app: MonitorApp) -> None:
    assert timed(lambda: app.record(sensor("big", "x" * (1 << 20)))) < 2.0
    assert timed(lambda: app.record(sensor("small"))) < 1.0
    assert app.find(Sensor, sensor("big").id) is not None


def test_many_large_events_in_one_transaction_commit(app: MonitorApp) -> None:
    many = [sensor(f"s-{i}", "y" * 300_000) for i in range(10)]  # 3 MB in one write
    assert timed(lambda: app.record(*many)) < 3.0
    assert len(app.recorder.select_notifications(1, 100)) == 10
