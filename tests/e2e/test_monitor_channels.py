"""Warnings reach a person's own channels and come back acknowledged, on the running stack
with real servers beside it: a webhook receiver checking signatures and an SMTP server
requiring STARTTLS. The district's duty post holds the Xujiahui cell (the grid names
`post:xuhui/duty-officer` as its grid officer), and the roster says who holds it when.

- A reading raises a RED warning; the post's holder gets it by signed webhook and by mail;
  she acknowledges through the mailed link; the chain stops, recorded as hers, by email;
  the link used again is refused and changes nothing.
- With the webhook endpoint down, the notification falls back to mail within the retry
  budget, the failed tries are in the inbox, and when the endpoint is back nothing comes
  twice.
- A swap at 08:00 field time makes the 08:05 warning reach the new holder."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time as clock
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import httpx
import pytest
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.events import to_timestamp
from lifeline.identity.nats import stream_name
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor import grid, rosters
from lifeline_monitor.channels.links import Links
from standardwebhooks.webhooks import Webhook

from tests.channel_servers import Background, SmsProvider, SmtpSink, WebhookReceiver
from tests.conftest import Databases

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)
HENGSHAN = common_pb2.GeoPoint(lat=31.2045, lon=121.4478)
STADIUM = common_pb2.GeoPoint(lat=31.1830, lon=121.4370)
CAOXI = common_pb2.GeoPoint(lat=31.1760, lon=121.4330)
LONGHUA = common_pb2.GeoPoint(lat=31.1700, lon=121.4500)
LINK_KEY = "the drill signs its acknowledgement links with this"
INBOUND = "whsec_" + base64.b64encode(b"the gateway signs replies with this").decode()
HE_JING_SMS = "+86 139 0000 0002"
S = pb.EscalationStatus
OUTCOME = pb.DeliveryOutcome
#: Field days in the past (field times may not lie ahead of the service's clock).
SWAP_DAY = datetime.now(SHANGHAI).date() - timedelta(days=2)
DAY = SWAP_DAY + timedelta(days=1)


def field(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), SHANGHAI).astimezone(UTC)


@dataclass
class World:
    stack: Stack
    monitor: monitor_pb2_grpc.MonitorServiceStub
    hook: WebhookReceiver
    down_hook: WebhookReceiver
    smtp: SmtpSink
    servers: Background


@pytest.fixture(scope="module")
def world(databases: Databases) -> Iterator[World]:
    state = Path(tempfile.mkdtemp(prefix="lifeline-channels-"))
    servers = Background()
    hook, down_hook, provider = WebhookReceiver(), WebhookReceiver(), SmsProvider()
    servers.run(hook.http.start())
    servers.run(provider.http.start())
    smtp = SmtpSink(state / "smtp-certs")
    smtp.start()
    retry = {"tries": 3, "backoff": 0.05, "max_backoff": 0.2, "timeout": 2}
    channels = {
        "retry": retry,
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "ca_file": smtp.ca_file,
                 "sender": "Lifeline <alerts@xuhui.example>"},
        "ack": {"secret": LINK_KEY},
        "gateway": {"sms_url": provider.url("Messages"), "username": provider.sid,
                    "password": provider.token, "inbound_secret": INBOUND,
                    "sms": {"To": "$to", "From": "+8610110", "Body": "$text"}},
        "parties": [
            {"id": "li-wei", "channels": [
                {"kind": "webhook", "url": hook.url, "secret": hook.secret},
                {"kind": "email", "to": "li.wei@xuhui.example", "also": True}]},
            # Her webhook is down until the test brings it up: mail is the fallback.
            {"id": "he-jing", "channels": [
                {"kind": "webhook", "url": down_hook.url, "secret": down_hook.secret},
                {"kind": "email", "to": "he.jing@xuhui.example"},
                {"kind": "sms", "to": HE_JING_SMS}]},
        ]}
    (state / "channels.toml").write_text(_toml(channels))
    stack = Stack(state, nats_url=os.environ.get("NATS_URL") or None,
                  database_url=databases.create(),
                  extra_env={"LIFELINE_FIELD_CLOCK": "observed",
                             "LIFELINE_CHANNELS": str(state / "channels.toml")})
    try:
        stack.start()
        token = stack.token("city-ops", "admin", "sensor-gateway", "operator", "viewer")
        channel = stack.channel("monitor", token)
        monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        monitor.LoadRoster(pb.LoadRosterRequest(
            posts=rosters.read_roster(ROOT / "rosters" / "xuhui.toml")), timeout=TIMEOUT)
        city = grid.read_grid_file(ROOT / "grids" / "xuhui.toml")
        for cell in city.cells:  # the duty post answers for every cell
            cell.grid_officer = "post:xuhui/duty-officer"
        monitor.LoadGrid(city, timeout=TIMEOUT)
        yield World(stack, monitor, hook, down_hook, smtp, servers)
        channel.close()
    finally:
        stack.stop()
        smtp.stop()
        servers.run(hook.http.stop())
        servers.run(down_hook.http.stop())
        servers.run(provider.http.stop())
        servers.close()
        shutil.rmtree(state, ignore_errors=True)


def _toml(data: dict[str, object]) -> str:
    """The channels file as a city writes it (TOML), from the same data."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = []
    for key, section in data.items():
        if key == "parties":
            for party in section:  # type: ignore[attr-defined]
                lines += ["[[parties]]", f"id = {value(party['id'])}",
                          f"channels = {value(party['channels'])}"]
        else:
            lines.append(f"[{key}]")
            lines += [f"{k} = {value(v)}" for k, v in section.items()]  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def cli(world: World, *args: str, json_: bool = True) -> str:
    """`lifeline-monitor ...` as a duty desk runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update({"LIFELINE_MONITOR_ADDR": world.stack.address("monitor"),
                "LIFELINE_STATE_DIR": "/nonexistent", "COLUMNS": "200",
                "LIFELINE_TOKEN": world.stack.token("duty-desk", "operator", "viewer"),
                "LIFELINE_TLS_CA": str(world.stack.authority.ca_file)})  # type: ignore[union-attr]
    done = subprocess.run([str(Path(sys.executable).parent / "lifeline-monitor"),
                           *(["--json"] if json_ else []), *args], env=env,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def sensor(world: World, sensor_id: str, where: common_pb2.GeoPoint) -> None:
    world.monitor.RegisterSensor(pb.RegisterSensorRequest(
        id=sensor_id, kind="water_level", hazard="urban_flooding", location=where,
        unit_of_measure="cm", direction=pb.DIRECTION_HIGHER_IS_WORSE,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50)), timeout=TIMEOUT)


def read(world: World, sensor_id: str, value: float, at: datetime) -> str:
    """Send a reading; answers the warning it raised or moved."""
    answer = world.monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[
        pb.Reading(sensor_id=sensor_id, value=value, measured_at=to_timestamp(at))]),
        timeout=TIMEOUT)
    return answer.warnings[0].id if answer.warnings else ""


def inbox(world: World, party: str) -> list[pb.PartyNotification]:
    return list(world.monitor.ListInbox(pb.ListInboxRequest(party=party, include_done=True),
                                        timeout=TIMEOUT).notifications)


def notification(world: World, party: str, warning_id: str, done: object
                 ) -> pb.PartyNotification:
    """The party's notification about the warning once done(notification) holds."""
    return wait_until(lambda: next((n for n in inbox(world, party)
                                    if n.warning_id == warning_id and done(n)), None),  # type: ignore[operator]
                      f"{party}'s notification of {warning_id}", TIMEOUT)


def delivered(n: pb.PartyNotification) -> list[str]:
    return [a.channel for a in n.deliveries if a.outcome == OUTCOME.DELIVERY_OUTCOME_DELIVERED]


def test_a_roster_swap_at_eight_makes_the_0805_warning_reach_the_new_holder(
        world: World) -> None:
    before = world.monitor.GetRoster(pb.GetRosterRequest(
        post="xuhui/duty-officer", at=to_timestamp(field(SWAP_DAY, 8, 5))), timeout=TIMEOUT)
    assert before.on_duty[0].holder == "li-wei"
    swapped = json.loads(cli(world, "roster", "swap", "xuhui/duty-officer", "--to",
                             "he-jing", "--at", field(SWAP_DAY, 8).isoformat(),
                             "--reason", "li-wei called in sick"))
    assert (swapped["holder"], swapped["by"]) == ("he-jing", "swap")
    shown = cli(world, "roster", "show", "--at", field(SWAP_DAY, 8, 5).isoformat(), json_=False)
    assert any(all(word in line for word in ("xuhui/duty-officer", "he-jing", "swap"))
               for line in shown.splitlines()), shown
    sensor(world, "wl-stadium", STADIUM)
    warning_id = read(world, "wl-stadium", 55, field(SWAP_DAY, 8, 5))
    n = notification(world, "he-jing", warning_id, lambda n: True)
    assert (n.post, n.role) == ("xuhui/duty-officer", "grid_officer")
    assert not [m for m in inbox(world, "li-wei") if m.warning_id == warning_id]
    chain = world.monitor.GetEscalation(pb.GetEscalationRequest(warning_id=warning_id),
                                        timeout=TIMEOUT).escalation
    assert "he-jing" in chain.notified and "li-wei" not in chain.notified
    world.monitor.AcknowledgeWarning(pb.AcknowledgeWarningRequest(id=warning_id),
                                     timeout=TIMEOUT)  # its chain stops here


def test_the_post_holder_gets_webhook_and_mail_and_acknowledges_through_the_link(
        world: World) -> None:
    sensor(world, "wl-xjh", XUJIAHUI)
    warning_id = read(world, "wl-xjh", 55, field(DAY, 9))
    n = notification(world, "li-wei", warning_id, lambda n: len(delivered(n)) == 2)
    assert n.post == "xuhui/duty-officer" and sorted(delivered(n)) == ["email", "webhook"]

    [hooked] = [r for r in world.hook.received
                if r.data and r.data["notification"]["warningId"] == warning_id]
    assert hooked.verified
    assert hooked.data["notification"]["party"] == "li-wei"
    [mail] = world.smtp.to("li.wei@xuhui.example")
    assert mail["Subject"].startswith("[RED] urban flooding at Xujiahui")
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"Acknowledge: (\S+)", text).group(1)  # type: ignore[union-attr]

    with httpx.Client(timeout=TIMEOUT) as web:
        page = web.get(link)  # what a mail scanner fetching the link would do
        assert page.status_code == 200 and "<form method='post'>" in page.text
        assert world.monitor.GetEscalation(pb.GetEscalationRequest(
            warning_id=warning_id), timeout=TIMEOUT).escalation.status == \
            S.ESCALATION_STATUS_RUNNING
        done = web.post(link)
        assert done.status_code == 200, done.text
        assert "acknowledged by li-wei through email" in done.text

    chain = wait_until(lambda: (lambda c: c if c.status == S.ESCALATION_STATUS_ACKNOWLEDGED
                                else None)(world.monitor.GetEscalation(
                                    pb.GetEscalationRequest(warning_id=warning_id),
                                    timeout=TIMEOUT).escalation), "the chain stopped", TIMEOUT)
    assert (chain.acknowledged_by, chain.acknowledged_via, chain.acknowledged_by_notified) == (
        "li-wei", "email", True)
    acked = notification(world, "li-wei", warning_id,
                         lambda n: n.status == pb.NOTIFICATION_STATUS_ACKNOWLEDGED)
    assert (acked.acknowledged_by, acked.acknowledged_via) == ("li-wei", "email")
    history = [pb.WarningEvent.FromString(d) for s, d in stream(world, "lifeline.monitor.warning.")]
    [ack] = [e.acknowledged for e in history if e.WhichOneof("event") == "acknowledged"
             and e.acknowledged.warning_id == warning_id]
    assert (ack.meta.actor, ack.meta.via) == ("li-wei", "email")

    with httpx.Client(timeout=TIMEOUT) as web:
        again = web.post(link)
    assert again.status_code == 409 and "already acknowledged" in again.text
    assert len([e for e in stream(world, "lifeline.monitor.warning.")
                if pb.WarningEvent.FromString(e[1]).WhichOneof("event") == "acknowledged"]) \
        == len([e for e in history if e.WhichOneof("event") == "acknowledged"])


def test_a_dead_webhook_falls_back_to_mail_and_nothing_comes_twice_when_it_recovers(
        world: World) -> None:
    sensor(world, "wl-hengshan", HENGSHAN)
    world.monitor.SwapDuty(pb.SwapDutyRequest(post="xuhui/duty-officer", to="he-jing",
                                              at=to_timestamp(field(DAY, 10))),
                           timeout=TIMEOUT)
    warning_id = read(world, "wl-hengshan", 55, field(DAY, 10, 1))
    n = notification(world, "he-jing", warning_id, lambda n: delivered(n) == ["email"])
    tries = [(a.channel, a.attempt, OUTCOME.Name(a.outcome)) for a in n.deliveries
             if a.round == n.times_notified]
    assert tries == [("webhook", 1, "DELIVERY_OUTCOME_FAILED"),
                     ("webhook", 2, "DELIVERY_OUTCOME_FAILED"),
                     ("webhook", 3, "DELIVERY_OUTCOME_FAILED"),
                     ("webhook", 3, "DELIVERY_OUTCOME_FELL_BACK"),
                     ("email", 1, "DELIVERY_OUTCOME_DELIVERED")]
    assert n.deliveries[0].reason == "connection refused"
    assert OUTCOME.Name(n.delivery) == "DELIVERY_OUTCOME_DELIVERED"
    shown = " ".join(cli(world, "inbox", "--party", "he-jing", json_=False).split())
    assert "webhook failed x3 (connection refused) -> email delivered" in shown, shown

    world.servers.run(world.down_hook.http.start())  # the endpoint recovers
    # A later warning reaches the recovered webhook: the marker that it would have seen more.
    sensor(world, "wl-caoxi", CAOXI)
    later = read(world, "wl-caoxi", 56, field(DAY, 10, 3))
    wait_until(lambda: [r for r in world.down_hook.received
                        if r.data["notification"]["warningId"] == later], "the later webhook",
               TIMEOUT)
    assert [r.data["notification"]["warningId"] for r in world.down_hook.received] == [later]
    mails = [m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
             for m in world.smtp.to("he.jing@xuhui.example")]
    assert len([m for m in mails if warning_id in m]) == 1


def test_a_link_for_another_person_or_expired_changes_nothing_and_an_sms_reply_acks(
        world: World) -> None:
    sensor(world, "wl-longhua", LONGHUA)
    warning_id = read(world, "wl-longhua", 55, field(DAY, 11))  # he-jing holds the post
    notification(world, "he-jing", warning_id, lambda n: delivered(n) == ["webhook"])
    level = common_pb2.WARNING_LEVEL_RED
    links = Links(LINK_KEY, 60)
    base = re.search(r"Acknowledge: (\S+)/ack/", world.smtp.to("he.jing@xuhui.example")[0]
                     .get_body(("plain",)).get_content()).group(1)  # type: ignore[union-attr]
    expired = Links(LINK_KEY, 1, lambda: clock.time() - 3600)
    with httpx.Client(timeout=TIMEOUT) as web:
        other = web.post(f"{base}/ack/{links.token(warning_id, 'li-wei', level, 'email')}")
        old = web.post(f"{base}/ack/{expired.token(warning_id, 'he-jing', level, 'email')}")
        assert (other.status_code, old.status_code) == (403, 410)
        assert "not for anyone notified" in other.text
        assert world.monitor.GetEscalation(pb.GetEscalationRequest(
            warning_id=warning_id), timeout=TIMEOUT).escalation.status == \
            S.ESCALATION_STATUS_RUNNING

        reply = f"From={HE_JING_SMS.replace(' ', '')}&Body=ACK+" \
                f"{links.code(warning_id, 'he-jing')}".encode().replace(b"+86", b"%2B86")
        now = datetime.now(UTC)
        headers = {"webhook-id": "in-1", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(INBOUND).sign("in-1", now, reply),
                   "content-type": "application/x-www-form-urlencoded"}
        answer = web.post(f"{base}/sms/inbound", content=reply, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"acknowledged": True, "warning_id": warning_id, "by": "he-jing"}
    chain = wait_until(lambda: (lambda c: c if c.status == S.ESCALATION_STATUS_ACKNOWLEDGED
                                else None)(world.monitor.GetEscalation(
                                    pb.GetEscalationRequest(warning_id=warning_id),
                                    timeout=TIMEOUT).escalation), "the chain stopped", TIMEOUT)
    assert (chain.acknowledged_by, chain.acknowledged_via) == ("he-jing", "sms")


def stream(world: World, prefix: str) -> list[tuple[str, bytes]]:
    async def read_all() -> list[tuple[str, bytes]]:
        nc = await bus.connect(world.stack.nats_url or "", "test", **world.stack.nats_login())
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream_name("monitor"))
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream_name("monitor"), seq)
                if (msg.subject or "").startswith(prefix):
                    found.append((msg.subject or "", msg.data or b""))
            return found
        finally:
            await nc.close()

    return asyncio.run(read_all())


def test_grpc_refuses_a_bad_roster_naming_the_field(world: World) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        world.monitor.LoadRoster(pb.LoadRosterRequest(posts=[pb.Post(
            id="xuhui/duty-officer", shifts=[pb.Shift(holder="li-wei", starts="25:00",
                                                      ends="08:00")])]), timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "posts[0].shifts[0].starts" in (refused.value.details() or "")
