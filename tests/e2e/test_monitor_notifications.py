"""Warnings reach people, against the running stack on a drill's field clock (readings carry
the field time; steps fall due on it): an ORANGE warning in the Xujiahui cell notifies the
cell's grid officer and the district's flood departments; unacknowledged, it escalates to
the duty officer exactly at ORANGE's deadline, once; the duty officer acknowledges it from
the inbox (the CLI) and the chain stops; the warning turns RED and the chain restarts at
RED's deadline. Every notification is in the events and on its party's own NATS subject;
every state change is a CAP alert the OASIS schema accepts. Then a weather bureau's CAP
alert raises a warning on the cells it covers and its cancel clears it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.events import from_timestamp, to_timestamp
from lifeline.identity.nats import stream_name
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor import grid
from lxml import etree

from tests.conftest import Databases

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CAP_DATA = ROOT / "tests" / "data" / "cap"
OASIS = ROOT / "services" / "monitor" / "lifeline_monitor" / "CAP-v1.2.xsd"
TIMEOUT = 10.0
XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)
S = pb.EscalationStatus
#: The drill's field time starts two hours ago (field times may not lie ahead of the clock).
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)


@pytest.fixture(scope="module")
def drill(databases: Databases) -> Iterator[Stack]:
    """A stack of its own on the drill's field clock, for the whole module."""
    state = Path(tempfile.mkdtemp(prefix="lifeline-notify-"))
    stack = Stack(state, nats_url=os.environ.get("NATS_URL") or None,
                  database_url=databases.create(),
                  extra_env={"LIFELINE_FIELD_CLOCK": "observed"})
    try:
        yield stack.start()
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def monitor(drill: Stack) -> Iterator[monitor_pb2_grpc.MonitorServiceStub]:
    token = drill.token("city-ops", "admin", "sensor-gateway", "operator", "viewer")
    channel = drill.channel("monitor", token)
    yield monitor_pb2_grpc.MonitorServiceStub(channel)
    channel.close()


def cli(stack: Stack, name: str, *args: str, stdin: bytes | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env["LIFELINE_MONITOR_ADDR"] = stack.address("monitor")
    env["LIFELINE_STATE_DIR"] = "/nonexistent"
    env["LIFELINE_TOKEN"] = stack.token(name, "operator", "viewer")
    env["LIFELINE_TLS_CA"] = str(stack.authority.ca_file)  # type: ignore[union-attr]
    done = subprocess.run([str(BIN / "lifeline-monitor"), *args], env=env, input=stdin,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def stream_messages(stack: Stack, prefix: str) -> list[tuple[str, bytes]]:
    """(subject, data) of every message in monitor's stream under prefix, in order."""

    async def read() -> list[tuple[str, bytes]]:
        nc = await bus.connect(stack.nats_url or "", "test", **stack.nats_login())
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream_name("monitor"))
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream_name("monitor"), seq)
                if msg.subject.startswith(prefix):
                    found.append((msg.subject, msg.data or b""))
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def read(monitor: monitor_pb2_grpc.MonitorServiceStub, value: float, minutes: float) -> None:
    monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[pb.Reading(
        sensor_id="wl-xjh-notify", value=value, measured_at=to_timestamp(at(minutes)))]),
        timeout=TIMEOUT)


def chain(monitor: monitor_pb2_grpc.MonitorServiceStub, warning_id: str,
          **wanted: object) -> pb.Escalation:
    def matches() -> pb.Escalation | None:
        try:
            found = monitor.GetEscalation(pb.GetEscalationRequest(warning_id=warning_id),
                                          timeout=TIMEOUT).escalation
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return found if all(getattr(found, k) == v for k, v in wanted.items()) else None

    return wait_until(matches, f"escalation {wanted}", TIMEOUT)


def test_a_warning_notifies_escalates_stops_on_acknowledgement_and_restarts_on_red(
        drill: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    monitor.LoadGrid(grid.read_grid_file(ROOT / "grids" / "xuhui.toml"), timeout=TIMEOUT)
    monitor.RegisterSensor(pb.RegisterSensorRequest(
        id="wl-xjh-notify", kind="water_level", hazard="urban_flooding", location=XUJIAHUI,
        unit_of_measure="cm", direction=pb.DIRECTION_HIGHER_IS_WORSE,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50)), timeout=TIMEOUT)
    read(monitor, 35, 0)  # ORANGE
    warning_id = f"{grid.cell_of(XUJIAHUI, 8)}/urban_flooding/1"
    first = chain(monitor, warning_id, step=1)
    assert (first.policy, first.level) == ("default", common_pb2.WARNING_LEVEL_ORANGE)
    assert sorted(first.notified) == ["police", "traffic", "wang-fang", "water"]

    inbox = json.loads(cli(drill, "wang-fang", "inbox", "--party", "wang-fang", "--json"))
    assert [n["warningId"] for n in inbox] == [warning_id]
    assert inbox[0]["channel"] == "app"

    read(monitor, 36, 14)  # not yet: ORANGE allows 15 minutes
    read(monitor, 36, 15.5)
    second = chain(monitor, warning_id, step=2)
    assert list(second.notified)[-1] == "xuhui-duty-officer"
    read(monitor, 36, 15.6)  # the watch runs again and again: step 2 happened once
    duty = monitor.ListInbox(pb.ListInboxRequest(party="xuhui-duty-officer"),
                             timeout=TIMEOUT)
    assert [n.step for n in duty.notifications] == [2]
    assert from_timestamp(duty.notifications[0].notified_at) == at(15)
    late = monitor.ListInbox(pb.ListInboxRequest(party="wang-fang"), timeout=TIMEOUT)
    assert late.overdue == 1  # step 1's deadline passed

    cli(drill, "xuhui-duty-officer", "ack", warning_id, "--at", at(16).isoformat())
    stopped = chain(monitor, warning_id, status=S.ESCALATION_STATUS_ACKNOWLEDGED)
    assert (stopped.acknowledged_by, stopped.acknowledged_by_notified) == (
        "xuhui-duty-officer", True)
    assert from_timestamp(stopped.acknowledged_at) == at(16)
    read(monitor, 36, 60)  # an hour on: nothing more
    assert not monitor.ListInbox(pb.ListInboxRequest(party="wang-fang"),
                                 timeout=TIMEOUT).notifications

    read(monitor, 55, 61)  # RED: the chain restarts at RED's 5 minutes
    restarted = chain(monitor, warning_id, restarts=1, step=1)
    assert restarted.level == common_pb2.WARNING_LEVEL_RED
    read(monitor, 56, 66.5)
    chain(monitor, warning_id, restarts=1, step=2)

    steps = []
    for _, data in stream_messages(drill, "lifeline.monitor.escalation."):
        event = pb.EscalationEvent.FromString(data)
        if event.WhichOneof("event") == "step_reached":
            steps.append((event.step_reached.step,
                          (from_timestamp(event.step_reached.meta.occurred_at) - T0)
                          .total_seconds() / 60))
    assert steps == [(1, 0.0), (2, 15.0), (1, 61.0), (2, 66.0)]
    subjects = [s for s, _ in stream_messages(drill, "lifeline.monitor.notification.")]
    for party in ("wang-fang", "water", "police", "traffic", "xuhui-duty-officer"):
        assert f"lifeline.monitor.notification.{party}.notified" in subjects
    assert "lifeline.monitor.notification.wang-fang.acknowledged" in subjects

    schema = etree.XMLSchema(etree.parse(str(OASIS)))
    alerts = monitor.GetCapAlerts(pb.GetCapAlertsRequest(warning_id=warning_id),
                                  timeout=TIMEOUT).alerts
    assert [a.msg_type for a in alerts][:1] == ["Alert"]
    assert {a.msg_type for a in alerts[1:]} == {"Update"}
    for before, alert in zip([None, *alerts], alerts, strict=False):
        assert schema.validate(etree.fromstring(alert.xml)), schema.error_log.last_error
        if before is not None:
            assert before.identifier in alert.references
    feed = wait_until(lambda: (lambda f: f if len(f) == len(alerts) else None)(
        stream_messages(drill, "lifeline.monitor.cap_feed.")), "the CAP feed", TIMEOUT)
    assert [pb.CapFeedEvent.FromString(d).published.alert.identifier for _, d in feed] == \
        [a.identifier for a in alerts]
    xml = cli(drill, "city-ops", "cap", warning_id)
    assert schema.validate(etree.fromstring(xml.encode()))


def bureau(name: str) -> bytes:
    """A test file with its dates moved into the drill (field times lie in the past)."""
    text = (CAP_DATA / name).read_text()
    return text.replace("2031-07-20", (T0 - timedelta(days=1)).strftime("%Y-%m-%d")).encode()


def test_a_weather_bureau_alert_raises_a_warning_and_its_cancel_clears_it(
        drill: Stack, monitor: monitor_pb2_grpc.MonitorServiceStub) -> None:
    cell = grid.cell_of(XUJIAHUI, 8)
    answer = json.loads(cli(drill, "city-ops", "cap", "import", "-", "--json",
                            stdin=bureau("rainstorm_alert.xml")))
    assert cell in answer["gridCells"]
    warning_id = f"{cell}/heavy_rain/1"
    assert warning_id in answer["warningIds"]
    warning = monitor.GetWarning(pb.GetWarningRequest(id=warning_id), timeout=TIMEOUT).warning
    assert warning.level == common_pb2.WARNING_LEVEL_ORANGE
    assert warning.responsible.grid_officer == "wang-fang"
    again = monitor.ImportCapAlert(pb.ImportCapAlertRequest(xml=bureau("rainstorm_alert.xml")),
                                   timeout=TIMEOUT)
    assert again.duplicate
    monitor.ImportCapAlert(pb.ImportCapAlertRequest(xml=bureau("rainstorm_update.xml")),
                           timeout=TIMEOUT)
    assert monitor.GetWarning(pb.GetWarningRequest(id=warning_id), timeout=TIMEOUT) \
        .warning.level == common_pb2.WARNING_LEVEL_RED
    monitor.ImportCapAlert(pb.ImportCapAlertRequest(xml=bureau("rainstorm_cancel.xml")),
                           timeout=TIMEOUT)
    assert monitor.GetWarning(pb.GetWarningRequest(id=warning_id), timeout=TIMEOUT) \
        .warning.status == pb.WARNING_STATUS_CLEARED

    with pytest.raises(grpc.RpcError) as refused:
        monitor.ImportCapAlert(pb.ImportCapAlertRequest(xml=bureau("invalid_urgency.xml")),
                               timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "urgency" in (refused.value.details() or "")
