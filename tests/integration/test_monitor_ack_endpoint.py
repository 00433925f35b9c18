"""Monitor's acknowledgement endpoint over real HTTP (uvicorn on a loopback port): a link
opened shows a button and changes nothing; a link posted acknowledges once; forged,
expired and oversized requests are refused with a 4xx and acknowledge nothing; an SMS
reply through the gateway's inbound webhook counts only when its signature, its sender's
number and its code are right."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime

import httpx
import pytest
from lifeline.common.v1 import common_pb2
from lifeline.errors import RuleViolation
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor.channels.config import parse_channels
from lifeline_monitor.channels.endpoint import MAX_BODY, build_app
from lifeline_monitor.channels.links import Claim, LinkRefused, Links
from standardwebhooks.webhooks import Webhook

from tests.channel_servers import HttpServer

KEY = "the endpoint test's link key, 32 bytes or more"
INBOUND = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
WARNING = "88309b96dbfffff/urban_flooding/1"


class Desk:
    """What acknowledging would do, kept: each claim acknowledged, once."""

    def __init__(self) -> None:
        self.acknowledged: list[Claim] = []

    async def acknowledge(self, claim: Claim) -> pb.Warning:
        if any(c.warning_id == claim.warning_id for c in self.acknowledged):
            raise LinkRefused(f"warning {claim.warning_id} is already acknowledged", 409)
        if claim.party == "stranger":
            raise RuleViolation("acknowledge-notified", "not notified")
        self.acknowledged.append(claim)
        return pb.Warning(id=claim.warning_id)

    async def waiting(self, party: str) -> list[pb.PartyNotification]:
        return [pb.PartyNotification(warning_id=WARNING, party=party,
                                     level=common_pb2.WARNING_LEVEL_RED)]


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Desk, Links]]:
    desk, links = Desk(), Links(KEY, 60)
    channels = parse_channels({
        "gateway": {"sms_url": "http://127.0.0.1:9/sms", "sms": {"To": "$to", "Body": "$text"},
                    "inbound_secret": INBOUND},
        "parties": [{"id": "li-wei", "channels": [{"kind": "sms", "to": "+86 138 0000 0001"}]}]})
    server = HttpServer(build_app(links, channels, desk.acknowledge, desk.waiting))
    await server.start()
    yield server.url, desk, links
    await server.stop()


async def test_a_link_shows_a_button_then_acknowledges_once(
        served: tuple[str, Desk, Links]) -> None:
    url, desk, links = served
    link = f"{url}/ack/{links.token(WARNING, 'li-wei', 4, 'email')}"
    async with httpx.AsyncClient() as web:
        shown = await web.get(link)
        assert shown.status_code == 200 and "Acknowledge as li-wei" in shown.text
        assert desk.acknowledged == []
        done = await web.post(link)
        assert done.status_code == 200 and "acknowledged by li-wei through email" in done.text
        again = await web.post(link)
    assert again.status_code == 409 and "already acknowledged" in again.text
    assert [(c.party, c.channel) for c in desk.acknowledged] == [("li-wei", "email")]


async def test_forged_expired_oversized_and_hostile_links_change_nothing(
        served: tuple[str, Desk, Links]) -> None:
    url, desk, links = served
    forged = Links("another key, long enough to sign with HS256", 60).token(
        WARNING, "li-wei", 4, "email")
    expired = Links(KEY, 1, lambda: time.time() - 3600).token(WARNING, "li-wei", 4, "email")
    valid = links.token(WARNING, "li-wei", 4, "email")
    async with httpx.AsyncClient() as web:
        answers = [(await web.post(f"{url}/ack/{forged}")).status_code,
                   (await web.post(f"{url}/ack/{expired}")).status_code,
                   (await web.post(f"{url}/ack/{valid}",
                                   content=b"x" * (MAX_BODY + 1))).status_code,
                   (await web.post(f"{url}/ack/%00%ff")).status_code,
                   (await web.get(f"{url}/ack/{'a' * 4000}")).status_code,
                   (await web.post(f"{url}/ack/{links.token(WARNING, 'stranger', 4, 'sms')}"
                                   )).status_code]
    assert answers == [403, 410, 413, 403, 403, 409]
    assert desk.acknowledged == []


def signed(body: bytes, secret: str = INBOUND) -> dict[str, str]:
    now = datetime.now(UTC)
    message_id = "msg_" + secrets.token_hex(8)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, now, body),
            "content-type": "application/x-www-form-urlencoded"}


async def test_an_sms_reply_acknowledges_only_signed_from_the_number_with_the_code(
        served: tuple[str, Desk, Links]) -> None:
    url, desk, links = served
    code = links.code(WARNING, "li-wei")
    right = f"From=%2B8613800000001&Body=ack+{code}".encode()
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with httpx.AsyncClient() as web:
        def post(body: bytes, headers: dict[str, str]) -> Awaitable[httpx.Response]:
            return web.post(f"{url}/sms/inbound", content=body, headers=headers)

        refused = [
            (await post(right, signed(right, other))).status_code,  # forged signature
            (await post(right, {"content-type": "text/plain"})).status_code,  # unsigned
            (await post(b"From=%2B8613911112222&Body=ACK+" + code.encode(),
                        signed(b"From=%2B8613911112222&Body=ACK+" + code.encode()))
             ).status_code,  # a number of nobody notified
            (await post(b"From=%2B8613800000001&Body=yes", signed(
                b"From=%2B8613800000001&Body=yes"))).status_code,  # no code
            (await post(b"From=%2B8613800000001&Body=ACK+000000", signed(
                b"From=%2B8613800000001&Body=ACK+000000"))).status_code,  # a wrong code
            (await post(b"x" * (MAX_BODY + 1), signed(b"x"))).status_code]
        assert desk.acknowledged == []
        body = json.dumps({"from": "+8613800000001", "text": f" ACK {code} "}).encode()
        headers = dict(signed(body), **{"content-type": "application/json"})
        accepted = await post(body, headers)
    assert refused == [401, 401, 403, 422, 409, 413]
    assert accepted.status_code == 200 and accepted.json()["acknowledged"] is True
    assert [(c.warning_id, c.party, c.channel) for c in desk.acknowledged] == [
        (WARNING, "li-wei", "sms")]
