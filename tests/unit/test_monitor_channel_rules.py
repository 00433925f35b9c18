"""The rules of delivery that need no server: the order a party's channels are tried in,
the backoff between tries, the channels file's checks, and the acknowledgement links
(forged, expired, for another warning) and SMS reply codes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import jwt
import pytest
from lifeline import settings
from lifeline.events import Cause
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor.channels.adapters import DeliveryFailed
from lifeline_monitor.channels.config import (
    Channels,
    ChannelsError,
    ChannelSpec,
    Retry,
    from_env,
    parse_channels,
)
from lifeline_monitor.channels.delivery import backoff, deliver, finished, ordered
from lifeline_monitor.channels.links import AUDIENCE, LinkRefused, Links
from lifeline_monitor.channels.message import Outgoing
from lifeline_monitor.escalation.model import Notification

KEY = "a link key of at least thirty-two bytes"


def spec(kind: str) -> ChannelSpec:
    return ChannelSpec(kind, "https://x.example/h" if kind in ("webhook", "chat") else "x",
                       Retry())


def test_the_steps_kind_of_channel_goes_first_the_rest_keep_their_order() -> None:
    mine = [spec("email"), spec("webhook"), spec("sms"), spec("voice")]
    assert [s.kind for s in ordered(mine, "phone")] == ["voice", "email", "webhook", "sms"]
    assert [s.kind for s in ordered(mine, "app")] == ["webhook", "email", "sms", "voice"]
    assert [s.kind for s in ordered(mine, "radio")] == ["email", "webhook", "sms", "voice"]


def test_backoff_grows_exponentially_under_its_cap_with_full_jitter() -> None:
    retry = Retry(tries=6, backoff=0.5, max_backoff=3.0)
    assert [backoff(retry, n, lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff(retry, 3, lambda: 0.25) == 0.5


def test_the_channels_file_is_checked_naming_the_field() -> None:
    for data, where in (
            ({"parties": [{"id": "a", "channels": [{"kind": "pager", "to": "1"}]}]},
             r"parties\[0\].channels\[0\].kind"),
            ({"parties": [{"id": "a", "channels": [{"kind": "email", "to": "a@b"}]}]},
             "needs \\[smtp\\]"),
            ({"gateway": {"sms_url": "http://g", "sms": {"To": "$number"}}},
             r"gateway.sms.To: unknown placeholder number"),
            ({"retry": {"tries": 0}}, r"retry.tries"),
            ({"ack": {"secret": "short"}}, r"ack.secret: at least 32 bytes"),
            ({"parties": [{"id": "a", "channels": [{"kind": "webhook", "url": "ftp://x"}]}]},
             r"channels\[0\].url")):
        with pytest.raises(ChannelsError, match=where):
            parse_channels(data)


def test_a_link_names_its_warning_and_person_and_refuses_forgery_and_age() -> None:
    now = [1_000_000.0]
    links = Links(KEY, 60, lambda: now[0])
    token = links.token("c/h/1", "li-wei", 4, "email")
    claim = links.check(token)
    assert (claim.warning_id, claim.party, claim.level, claim.channel) == (
        "c/h/1", "li-wei", 4, "email")
    forged = jwt.encode({"w": "c/h/1", "p": "li-wei", "l": 4, "jti": "x", "aud": AUDIENCE,
                         "exp": int(now[0]) + 60}, "another key of thirty-two bytes or more",
                        "HS256")
    for bad in (forged, token[:-2] + "xx", "nonsense", "a" * 5000):
        with pytest.raises(LinkRefused) as refused:
            links.check(bad)
        assert refused.value.status == 403
    now[0] += 3601
    with pytest.raises(LinkRefused, match="expired") as expired:
        links.check(token)
    assert expired.value.status == 410
    assert Links(KEY, 60).code("c/h/1", "li-wei") == links.code("c/h/1", "li-wei")
    assert links.code("c/h/1", "li-wei") != links.code("c/h/2", "li-wei")


def test_a_notification_keeps_its_attempts_and_the_outcome_of_its_latest_round() -> None:
    at = datetime(2031, 7, 20, tzinfo=UTC)
    cause = Cause(actor="monitor", occurred_at=at)
    n = Notification.start(uuid4(), "notified", pb.WarningNotified(
        notification=pb.PartyNotification(warning_id="c/h/1", party="li-wei")), cause, at)
    n.record("delivery", pb.DeliveryRecorded(warning_id="c/h/1", party="li-wei", attempt=(
        pb.DeliveryAttempt(channel="webhook", outcome=pb.DELIVERY_OUTCOME_DELIVERED,
                           round=1))), cause, at)
    assert n.view.delivery == pb.DELIVERY_OUTCOME_DELIVERED and finished(n.view)
    n.record("notified", pb.WarningNotified(notification=pb.PartyNotification(
        warning_id="c/h/1", party="li-wei")), cause, at)
    assert n.view.times_notified == 2 and len(n.view.deliveries) == 1
    assert n.view.delivery == pb.DELIVERY_OUTCOME_UNSPECIFIED and not finished(n.view)


class Failing:
    """A channel whose every try fails."""

    def __init__(self, kind: str) -> None:
        self.spec, self.tries = ChannelSpec(kind, "x", Retry(tries=3, backoff=0)), 0

    @property
    def target(self) -> str:
        return "x"

    async def send(self, outgoing: Outgoing) -> None:
        self.tries += 1
        raise DeliveryFailed("HTTP 503")


async def test_delivery_stops_once_the_notification_no_longer_waits() -> None:
    first, second = Failing("webhook"), Failing("sms")
    kept: list[str] = []

    async def record(attempt: pb.DeliveryAttempt) -> bool:
        kept.append(pb.DeliveryOutcome.Name(attempt.outcome))
        return len(kept) < 2  # acknowledged meanwhile, after the second try failed

    outgoing = Outgoing(pb.PartyNotification(), "", "", "", datetime.now(UTC))
    assert not await deliver([first, second], lambda _: outgoing, record)
    assert (first.tries, second.tries) == (2, 0)
    assert kept == ["DELIVERY_OUTCOME_FAILED", "DELIVERY_OUTCOME_FAILED"]


async def test_every_channel_failing_ends_in_a_dead_letter_after_each_ones_tries() -> None:
    first, second = Failing("webhook"), Failing("email")
    kept: list[tuple[str, str, str]] = []

    async def record(attempt: pb.DeliveryAttempt) -> bool:
        kept.append((attempt.channel, pb.DeliveryOutcome.Name(attempt.outcome)[17:],
                     attempt.next_channel))
        return True

    outgoing = Outgoing(pb.PartyNotification(), "", "", "", datetime.now(UTC))
    assert not await deliver([first, second], lambda _: outgoing, record)
    assert (first.tries, second.tries) == (3, 3)
    assert kept == [("webhook", "FAILED", "")] * 3 + [("webhook", "FELL_BACK", "email")] + \
        [("email", "FAILED", "")] * 3 + [("email", "DEAD_LETTERED", "")]


def test_a_bad_channels_file_or_listen_address_stops_monitor_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELINE_ACK_LISTEN", raising=False)
    monkeypatch.delenv("LIFELINE_CHANNELS", raising=False)

    def fresh() -> tuple[Channels, str]:  # the settings are read once per process
        settings.load.cache_clear()
        return from_env()

    assert fresh() == (Channels(), "127.0.0.1:0")  # no file: inboxes only
    bad = tmp_path / "channels.toml"
    bad.write_text('[[parties]]\nid = "a"\nchannels = [{ kind = "fax", to = "1" }]\n')
    monkeypatch.setenv("LIFELINE_CHANNELS", str(bad))
    with pytest.raises(SystemExit, match=r"LIFELINE_CHANNELS: channels: parties\[0\]"
                                         r"\.channels\[0\]\.kind: one of webhook"):
        fresh()
    monkeypatch.setenv("LIFELINE_CHANNELS", str(tmp_path / "missing.toml"))
    with pytest.raises(SystemExit, match=r"missing\.toml"):
        fresh()
    monkeypatch.delenv("LIFELINE_CHANNELS")
    monkeypatch.setenv("LIFELINE_ACK_LISTEN", "8080")
    with pytest.raises(SystemExit, match="LIFELINE_ACK_LISTEN must be host:port"):
        fresh()
