"""Live views for a duty desk: dispatch's WatchIncidents and monitor's WatchWarnings send
what is active, then each change as it happens; a caller who leaves leaves nothing behind.
How soon a change is shown (issue 13: within a second) is measured by
bench/responsiveness.py; here a change not shown in ten times that fails."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.scenario import wait_until

pytestmark = pytest.mark.e2e
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    token = stack.token("duty-desk", *LOCAL_USER_ROLES)
    opened = {name: stack.channel(name, token) for name in ("dispatch", "monitor")}
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture
def dispatch(channels: dict[str, grpc.Channel]) -> dispatch_pb2_grpc.DispatchServiceStub:
    return dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"])


@pytest.fixture
def monitor(channels: dict[str, grpc.Channel]) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channels["monitor"])


class Follower:
    """Reads a server stream on a thread of its own; each message waits in a queue."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.arrived: queue.Queue[Any | None] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.arrived.put(message)
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.arrived.put(None)

    def until(self, wanted: Callable[[Any], bool], what: str) -> Any:
        """The first message from here on that is wanted."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                message = self.arrived.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"no {what} within {TIMEOUT:g} s") from None
            if message is None:
                raise AssertionError(f"the watch ended before {what}: {self.error}")
            if wanted(message):
                return message

    def snapshot(self) -> list[Any]:
        """Everything up to the caught_up message."""
        initial: list[Any] = []
        while True:
            message = self.until(lambda _: True, "the end of the snapshot")
            if message.caught_up:
                return initial
            assert message.initial
            initial.append(message)

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(TIMEOUT)


def report(dispatch: dispatch_pb2_grpc.DispatchServiceStub, what: str) -> incident_pb2.Incident:
    return dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=common_pb2.GeoPoint(lat=31.23, lon=121.47),
        description=f"{what} {uuid.uuid4().hex[:8]}"), timeout=TIMEOUT).incident


def test_a_desk_sees_the_active_incidents_then_each_change(
        dispatch: dispatch_pb2_grpc.DispatchServiceStub) -> None:
    active = report(dispatch, "smell of gas on the stairs")
    dismissed = report(dispatch, "smell of gas, a false alarm")
    dispatch.DismissIncident(dispatch_pb2.IncidentStepRequest(incident_id=dismissed.id),
                             timeout=TIMEOUT)

    desk = Follower(dispatch.WatchIncidents(dispatch_pb2.WatchIncidentsRequest()))
    try:
        shown = {m.incident.id: m.incident for m in desk.snapshot()}
        assert shown[active.id].state == incident_pb2.INCIDENT_STATE_WARNING
        assert dismissed.id not in shown  # the snapshot holds what is active
        assert not any(i.state in (incident_pb2.INCIDENT_STATE_CLOSED,
                                   incident_pb2.INCIDENT_STATE_DISMISSED)
                       for i in shown.values())

        new = report(dispatch, "gas meter hissing")
        seen = desk.until(lambda m: m.incident.id == new.id, "the new incident")
        assert not seen.initial and seen.incident.description == new.description

        # A change shows the incident as it now is: declared, with its plan.
        dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
            incident_id=new.id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
            hazard_type="gas_leak", grade=incident_pb2.GRADE_IV), timeout=TIMEOUT)
        declared = desk.until(lambda m: m.incident.id == new.id
                                 and m.incident.state != incident_pb2.INCIDENT_STATE_WARNING,
                                 "the declaration")
        assert declared.incident.grade == incident_pb2.GRADE_IV
        assert declared.incident.plan.plan_id == "gas_leak"
        # ...and one leaving the active ones is shown leaving.
        dispatch.DismissIncident(dispatch_pb2.IncidentStepRequest(incident_id=active.id),
                                 timeout=TIMEOUT)
        gone = desk.until(lambda m: m.incident.id == active.id, "the dismissal")
        assert gone.incident.state == incident_pb2.INCIDENT_STATE_DISMISSED
    finally:
        desk.close()


def test_a_raised_warning_is_shown_in_its_colour_until_it_is_cleared(
        monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    t = uuid.uuid4().hex[:8]
    hazard, sensor_id = f"watch_flood_{t}", f"watch-gauge-{t}"
    monitor.RegisterSensor(monitor_pb2.RegisterSensorRequest(
        id=sensor_id, kind="water_level", hazard=hazard, unit_of_measure="m",
        location=common_pb2.GeoPoint(lat=31.2, lon=121.4),
        thresholds=monitor_pb2.Thresholds(blue=0.2, yellow=0.4, orange=0.6, red=0.8),
        direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE, new_names=True,
        rules=monitor_pb2.AlarmRules(off_delay=Duration())),  # each reading moves it down
        timeout=TIMEOUT)

    def read(value: float) -> None:
        monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(
            readings=[monitor_pb2.Reading(sensor_id=sensor_id, value=value)]), timeout=TIMEOUT)

    desk = Follower(monitor.WatchWarnings(monitor_pb2.WatchWarningsRequest(hazard=hazard)))
    try:
        assert desk.snapshot() == []  # nothing raised about this hazard yet
        read(0.9)
        red = desk.until(lambda m: True, "the raised warning")
        assert red.warning.hazard == hazard
        assert red.warning.level == common_pb2.WARNING_LEVEL_RED
        assert red.warning.status == monitor_pb2.WARNING_STATUS_ACTIVE

        read(0.5)
        yellow = desk.until(lambda m: m.warning.level != common_pb2.WARNING_LEVEL_RED,
                               "the warning's new level")
        assert (yellow.warning.id, yellow.warning.level) == (red.warning.id,
                                                             common_pb2.WARNING_LEVEL_YELLOW)
        read(0.0)
        cleared = desk.until(
            lambda m: m.warning.status == monitor_pb2.WARNING_STATUS_CLEARED, "the clearing")
        assert cleared.warning.id == red.warning.id

        # A second desk starting now is shown no cleared warning.
        late = Follower(monitor.WatchWarnings(monitor_pb2.WatchWarningsRequest(hazard=hazard)))
        try:
            assert late.snapshot() == []
        finally:
            late.close()
    finally:
        desk.close()


def test_a_desk_that_leaves_leaves_no_watch_behind(
        stack: Stack, dispatch: dispatch_pb2_grpc.DispatchServiceStub) -> None:
    log = stack.service("dispatch").log_path

    def logged(line: str) -> bool:
        return line in log.read_text(errors="replace")

    first = Follower(dispatch.WatchIncidents(dispatch_pb2.WatchIncidentsRequest()))
    second = Follower(dispatch.WatchIncidents(dispatch_pb2.WatchIncidentsRequest()))
    first.snapshot(), second.snapshot()
    wait_until(lambda: logged("incident watch opened (2 open)"), "both watches", TIMEOUT)
    report(dispatch, "while a desk leaves")  # it may leave while a change is on its way
    first.close()
    # Forgotten either way it ends: cancelled, or (when it left while a change was being
    # written to it) its response stream closed under it, which the server sees as an end.
    wait_until(lambda: logged("incident watch cancelled by its caller (1 still open)")
               or logged("incident watch ended (1 still open)"),
               "the first watch to be forgotten", TIMEOUT)
    # The one still open still works.
    new = report(dispatch, "after one desk left")
    second.until(lambda m: m.incident.id == new.id, "the incident on the desk still open")
    second.close()
    wait_until(lambda: logged("incident watch cancelled by its caller (0 still open)"),
               "the second watch to be forgotten", TIMEOUT)
    assert isinstance(first.error, grpc.RpcError)
    assert first.error.code() == grpc.StatusCode.CANCELLED
