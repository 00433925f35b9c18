"""Monitor's delivery channels against real servers in this process: a webhook receiver
checking Standard Webhooks signatures, an SMTP server requiring STARTTLS (aiosmtpd), and a
Twilio-shaped SMS and voice provider. Each fault a channel meets in the field (refused
connection, timeout, HTTP 500, a slow server) is exercised, and a party's channels fall
through in order, each try recorded."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.processes import free_port
from lifeline_monitor.channels.adapters import DeliveryFailed, Email, GatewayMessage, Webhook
from lifeline_monitor.channels.config import ChannelSpec, Retry, parse_channels
from lifeline_monitor.channels.delivery import deliver
from lifeline_monitor.channels.message import PAYLOAD_TYPE, Outgoing
from lxml import etree

from tests.channel_servers import SmsProvider, SmtpSink, WebhookReceiver, running

L = common_pb2.WarningLevel
OUTCOME = pb.DeliveryOutcome
FAST = Retry(tries=3, backoff=0.01, max_backoff=0.05, timeout=1.0)


def outgoing(party: str = "li-wei") -> Outgoing:
    n = pb.PartyNotification(
        warning_id="88309b96dbfffff/urban_flooding/1", party=party, role="duty_officer",
        channel="app", step=1, level=L.WARNING_LEVEL_RED, hazard="urban_flooding",
        grid_cell="88309b96dbfffff", cell_name="Xujiahui underpass", district="xuhui",
        post="xuhui/duty-officer", times_notified=1,
        location=common_pb2.GeoPoint(lat=31.1955, lon=121.4373),
        evidence=pb.Reading(sensor_id="wl-xjh", value=52))
    return Outgoing(n, "http://127.0.0.1:9/ack/TOKEN", "ACK 123456",
                    f"{n.warning_id}|{party}|1", datetime(2031, 7, 20, 8, 5, tzinfo=UTC))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(tmp_path / "certs")
    sink.start()
    yield sink
    sink.stop()


async def test_a_webhook_arrives_signed_as_json_as_cap_and_as_chat(
        client: httpx.AsyncClient) -> None:
    receiver = WebhookReceiver()
    async with running(receiver.http):
        for kind, fmt in (("webhook", "json"), ("webhook", "cap"), ("chat", "json")):
            spec = ChannelSpec(kind, receiver.url, FAST, receiver.secret, fmt)
            await Webhook(spec, client).send(outgoing())
    json_, cap, chat = receiver.received
    assert all(r.verified for r in receiver.received)
    assert json_.data["type"] == PAYLOAD_TYPE
    assert json_.data["notification"]["party"] == "li-wei"
    assert json_.data["notification"]["post"] == "xuhui/duty-officer"
    assert json_.data["ack_url"].endswith("/ack/TOKEN")
    assert json_.headers["webhook-id"] == "88309b96dbfffff/urban_flooding/1|li-wei|1"
    alert = etree.fromstring(cap.body)
    assert alert.findtext("{*}info/{*}severity") == "Extreme"
    assert "Xujiahui underpass" in chat.data["text"] and "/ack/TOKEN" in chat.data["text"]


async def test_a_forged_webhook_signature_is_refused_by_the_receiver(
        client: httpx.AsyncClient) -> None:
    receiver = WebhookReceiver()
    wrong = WebhookReceiver().secret
    async with running(receiver.http):
        with pytest.raises(DeliveryFailed, match="HTTP 401"):
            await Webhook(ChannelSpec("webhook", receiver.url, FAST, wrong), client).send(
                outgoing())
    assert [r.verified for r in receiver.received] == [False]


@pytest.mark.parametrize(("fault", "reason"), [
    ("refused", "connection refused"), ("fail", "HTTP 500"), ("slow", "timed out")])
async def test_each_webhook_fault_is_a_failed_try_with_its_reason(
        client: httpx.AsyncClient, fault: str, reason: str) -> None:
    receiver = WebhookReceiver()
    url = f"http://127.0.0.1:{free_port()}/hook" if fault == "refused" else receiver.url
    receiver.behaviour.mode, receiver.behaviour.delay = fault, 4.0
    spec = ChannelSpec("webhook", url, Retry(tries=1, timeout=1.5), receiver.secret)
    async with running(receiver.http):
        with pytest.raises(DeliveryFailed, match=reason):
            await Webhook(spec, client).send(outgoing())
    if fault != "slow":  # a slow one may finish after the sender gave up (hence webhook-id)
        assert receiver.received == []


async def test_a_mail_goes_over_starttls_with_text_html_and_the_link(smtp: SmtpSink) -> None:
    channels = parse_channels({"smtp": {"host": "127.0.0.1", "port": smtp.port,
                                        "ca_file": smtp.ca_file,
                                        "sender": "Lifeline <alerts@city.example>"}})
    assert channels.smtp is not None
    tls = ssl.create_default_context(cafile=smtp.ca_file)
    spec = ChannelSpec("email", "li.wei@xuhui.example", FAST)
    await Email(spec, channels.smtp, tls).send(outgoing())
    [sent] = smtp.mails
    assert sent.over_tls and sent.recipients == ["li.wei@xuhui.example"]
    mail = sent.message
    assert mail["Subject"] == "[RED] urban flooding at Xujiahui underpass"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Acknowledge: http://127.0.0.1:9/ack/TOKEN" in text
    assert 'href="http://127.0.0.1:9/ack/TOKEN"' in html


async def test_mail_faults_refused_and_a_temporary_failure(smtp: SmtpSink) -> None:
    tls = ssl.create_default_context(cafile=smtp.ca_file)
    smtp.behaviour.mode = "fail"
    spec = ChannelSpec("email", "li.wei@xuhui.example", FAST)
    server: dict[str, Any] = {"host": "127.0.0.1", "port": smtp.port}
    with pytest.raises(DeliveryFailed, match="SMTP 451"):
        await Email(spec, parse_channels({"smtp": server}).smtp, tls).send(  # type: ignore[arg-type]
            outgoing())
    server["port"] = free_port()
    with pytest.raises(DeliveryFailed, match="connection refused"):
        await Email(spec, parse_channels({"smtp": server}).smtp, tls).send(  # type: ignore[arg-type]
            outgoing())
    assert smtp.mails == []


def gateway_config(provider: SmsProvider) -> dict[str, Any]:
    return {"gateway": {
        "sms_url": provider.url("Messages"), "voice_url": provider.url("Calls"),
        "username": provider.sid, "password": provider.token,
        "sms": {"To": "$to", "From": "+8610110", "Body": "$text"},
        "voice": {"To": "$to", "From": "+8610110",
                  "Twiml": "<Response><Say>$text</Say></Response>"}}}


async def test_sms_and_voice_reach_a_twilio_shaped_provider(client: httpx.AsyncClient) -> None:
    provider = SmsProvider()
    gateway = parse_channels(gateway_config(provider)).gateway
    assert gateway is not None
    async with running(provider.http):
        await GatewayMessage(ChannelSpec("sms", "+8613800000001", FAST), gateway,
                             client).send(outgoing())
        await GatewayMessage(ChannelSpec("voice", "+8613800000001", FAST), gateway,
                             client).send(outgoing())
    [sms], [call] = provider.messages, provider.calls
    assert sms["To"] == "+8613800000001" and "Reply ACK 123456" in sms["Body"]
    assert call["Twiml"].startswith("<Response><Say>[RED] urban flooding")
    etree.fromstring(call["Twiml"].encode())  # still well-formed XML


async def test_gateway_faults_bad_credentials_500_slow_and_refused(
        client: httpx.AsyncClient) -> None:
    provider = SmsProvider()
    config = gateway_config(provider)
    # A timeout no answer comes near even on a loaded machine, and a gateway slower still.
    spec = ChannelSpec("sms", "+8613800000001", Retry(tries=1, timeout=1.5))
    async with running(provider.http):
        wrong = dict(config["gateway"], password="wrong")
        with pytest.raises(DeliveryFailed, match="HTTP 401"):
            await GatewayMessage(spec, parse_channels({"gateway": wrong}).gateway,  # type: ignore[arg-type]
                                 client).send(outgoing())
        gateway = parse_channels(config).gateway
        provider.behaviour.mode = "fail"
        with pytest.raises(DeliveryFailed, match="HTTP 500"):
            await GatewayMessage(spec, gateway, client).send(outgoing())  # type: ignore[arg-type]
        provider.behaviour.mode, provider.behaviour.delay = "slow", 4.0
        with pytest.raises(DeliveryFailed, match="timed out"):
            await GatewayMessage(spec, gateway, client).send(outgoing())  # type: ignore[arg-type]
    with pytest.raises(DeliveryFailed, match="connection refused"):
        await GatewayMessage(spec, gateway, client).send(outgoing())  # type: ignore[arg-type]
    assert provider.messages == []


async def test_a_dead_webhook_falls_back_to_mail_and_nothing_comes_twice(
        client: httpx.AsyncClient, smtp: SmtpSink) -> None:
    receiver = WebhookReceiver()
    receiver.behaviour.mode = "fail"
    smtp_config = parse_channels({"smtp": {"host": "127.0.0.1", "port": smtp.port}}).smtp
    assert smtp_config is not None
    hook = Webhook(ChannelSpec("webhook", receiver.url, FAST, receiver.secret), client)
    mail = Email(ChannelSpec("email", "li.wei@xuhui.example", FAST), smtp_config,
                 ssl.create_default_context(cafile=smtp.ca_file))
    recorded: list[pb.DeliveryAttempt] = []
    waits: list[float] = []

    async def record(attempt: pb.DeliveryAttempt) -> bool:
        recorded.append(attempt)
        return True

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with running(receiver.http):
        assert await deliver([hook, mail], lambda _: outgoing(), record, sleep)
        receiver.behaviour.mode = "ok"  # recovered: nothing is retried behind the mail
    assert [(a.channel, a.attempt, OUTCOME.Name(a.outcome), a.reason) for a in recorded] == [
        ("webhook", 1, "DELIVERY_OUTCOME_FAILED", "HTTP 500"),
        ("webhook", 2, "DELIVERY_OUTCOME_FAILED", "HTTP 500"),
        ("webhook", 3, "DELIVERY_OUTCOME_FAILED", "HTTP 500"),
        ("webhook", 3, "DELIVERY_OUTCOME_FELL_BACK", "3 tries failed, the last: HTTP 500"),
        ("email", 1, "DELIVERY_OUTCOME_DELIVERED", "")]
    assert recorded[3].next_channel == "email"
    assert len(waits) == 2 and all(0 <= w <= FAST.max_backoff for w in waits)
    assert receiver.tries == 3 and receiver.received == []
    assert len(smtp.to("li.wei@xuhui.example")) == 1
