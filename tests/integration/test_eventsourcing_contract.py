"""The `eventsourcing` library's own recorder tests, run against Lifeline's recorder
(`lifeline.store.StoreRecorder`, configured as the services configure it): an upgrade of the
library that changes what the recorder relies on fails here first, in one place.

Left out: the library's timing tests (speed is measured in bench/), its plain aggregate
recorder's (Lifeline's returns notification ids), and the cases where Lifeline departs from
the library on purpose, each named below with why."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    ProcessRecorder,
    Tracking,
)
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment
from lifeline.store import StoreRecorder, ensure_schema, eventsourcing_env


class LifelineRecorder:
    """Each test gets a recorder of its own, in a fresh schema of the test database."""

    database_url: str
    factories: list[Any]

    @pytest.fixture(autouse=True)
    def _database(self, database_url: str) -> Any:
        self.database_url, self.factories = database_url, []
        yield
        for factory in self.factories:
            factory.close()

    def create_recorder(self) -> ProcessRecorder:
        schema = f"contract_{secrets.token_hex(4)}"
        ensure_schema(self.database_url, schema)
        factory = InfrastructureFactory.construct(
            Environment("contract", eventsourcing_env(self.database_url, schema)))
        self.factories.append(factory)
        recorder = factory.process_recorder()
        assert isinstance(recorder, StoreRecorder)
        return recorder


class TestAsTrackingRecorder(LifelineRecorder, TrackingRecorderTestCase):
    # Expects a gap below the highest position to be refused: the departure tested in
    # TestAsProcessRecorder.test_raises_when_lower_inserted_later.
    test_insert_tracking = None  # type: ignore[assignment]


class TestAsApplicationRecorder(LifelineRecorder, ApplicationRecorderTestCase[Any]):
    test_performance = None  # type: ignore[assignment]
    test_concurrent_throughput = None  # type: ignore[assignment]


class TestAsProcessRecorder(LifelineRecorder, ProcessRecorderTestCase):
    test_performance = None  # type: ignore[assignment]

    def test_raises_when_lower_inserted_later(self) -> None:
        """Departs on purpose (multi-row tracking, `eventsourcing_env`): a consumer tracks a
        row per upstream event, so an older one arriving after a newer (JetStream may
        redeliver it so) is still taken once; the same one again is refused."""
        recorder = self.create_recorder()
        recorder.insert_events([], tracking=Tracking("upstream_app", 2))
        recorder.insert_events([], tracking=Tracking("upstream_app", 1))
        assert recorder.max_tracking_id("upstream_app") == 2
        with pytest.raises(IntegrityError):
            recorder.insert_events([], tracking=Tracking("upstream_app", 1))
