"""The delivery adapters behind one interface: webhook (and chat, the same adapter with a
chat payload), email over SMTP, and SMS or voice through an HTTP gateway. Each sends one
`Outgoing` once, or raises `DeliveryFailed` saying why in a few words."""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from lifeline.monitor.v1 import monitor_pb2 as pb
from standardwebhooks.webhooks import Webhook as Signer

from lifeline_monitor.cap import encode
from lifeline_monitor.channels.config import ChannelSpec, Gateway, Smtp
from lifeline_monitor.channels.message import Outgoing


class DeliveryFailed(Exception):
    """A try failed; the message says why (refused, timed out, HTTP 500...)."""


class Channel(Protocol):
    spec: ChannelSpec

    @property
    def target(self) -> str:
        """Where it goes, partly hidden (for the record)."""

    async def send(self, outgoing: Outgoing) -> None:
        """Deliver once, or raise DeliveryFailed."""


def _why(error: BaseException) -> str:
    if isinstance(error, httpx.ConnectError | ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {str(error)[:120]}"


async def _post(client: httpx.AsyncClient, url: str, **kwargs: object) -> None:
    try:
        response = await client.post(url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as error:
        raise DeliveryFailed(_why(error)) from None
    if not response.is_success:
        raise DeliveryFailed(f"HTTP {response.status_code}")


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


def mask(address: str) -> str:
    """An address or number with most of it hidden: l***@xuhui.example, +86*******0001."""
    if "@" in address:
        name, _, domain = address.partition("@")
        return f"{name[:1]}***@{domain}"
    return address[:3] + "*" * max(len(address) - 7, 0) + address[-4:]


class Webhook:
    """POST the notification as JSON (or a CAP 1.2 alert, or a chat message), signed the
    Standard Webhooks way: webhook-id, webhook-timestamp, webhook-signature (HMAC-SHA256
    over id, timestamp and body)."""

    def __init__(self, spec: ChannelSpec, client: httpx.AsyncClient) -> None:
        self.spec, self.client = spec, client
        self.signer = Signer(spec.secret) if spec.secret else None

    @property
    def target(self) -> str:
        return _host(self.spec.to)

    def body(self, outgoing: Outgoing) -> tuple[bytes, str]:
        if self.spec.kind == "chat":
            return json.dumps(outgoing.chat()).encode(), "application/json"
        if self.spec.format == "cap":
            return cap_xml(outgoing), "application/cap+xml"
        return outgoing.json(), "application/json"

    async def send(self, outgoing: Outgoing) -> None:
        body, content_type = self.body(outgoing)
        headers = {"content-type": content_type, "user-agent": "lifeline-monitor"}
        if self.signer is not None:
            # Wall time: the receiver checks it against its own clock, whatever the field's.
            now = datetime.now(UTC)
            headers.update({"webhook-id": outgoing.message_id,
                            "webhook-timestamp": str(int(now.timestamp())),
                            "webhook-signature": self.signer.sign(outgoing.message_id, now,
                                                                  body)})
        await _post(self.client, self.spec.to, content=body, headers=headers,
                    timeout=self.spec.retry.timeout)


def cap_xml(outgoing: Outgoing) -> bytes:
    """The notification's warning as a CAP 1.2 alert."""
    n = outgoing.notification
    warning = pb.Warning(id=n.warning_id, hazard=n.hazard, grid_cell=n.grid_cell,
                         location=n.location, level=n.level, evidence=n.evidence,
                         responsible=pb.Responsible(cell_name=n.cell_name,
                                                    district=n.district))
    alert = encode.alert(warning, "Alert", n.times_notified, outgoing.sent_at, None)
    return bytes(alert.xml)


class Email:
    """A mail with plain text and HTML, through the city's SMTP server (STARTTLS)."""

    def __init__(self, spec: ChannelSpec, smtp: Smtp, tls: ssl.SSLContext | None = None
                 ) -> None:
        self.spec, self.smtp, self.tls = spec, smtp, tls

    @property
    def target(self) -> str:
        return mask(self.spec.to)

    async def send(self, outgoing: Outgoing) -> None:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.smtp.sender, self.spec.to, \
            outgoing.subject
        mail["Message-ID"] = make_msgid(outgoing.message_id.replace("|", "."), "lifeline")
        mail.set_content(outgoing.text())
        mail.add_alternative(outgoing.html(), subtype="html")
        try:
            await aiosmtplib.send(
                mail, hostname=self.smtp.host, port=self.smtp.port,
                start_tls=self.smtp.starttls, tls_context=self.tls,
                username=self.smtp.username or None, password=self.smtp.password or None,
                timeout=self.spec.retry.timeout)
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryFailed(f"SMTP {error.code} {error.message[:80]}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            cause = error.__cause__ or error
            raise DeliveryFailed("connection refused" if isinstance(
                cause, ConnectionRefusedError) else _why(error)) from None


class GatewayMessage:
    """An SMS or a voice call through the city's HTTP gateway, the request built from its
    template (so a city points it at its carrier's or provider's API)."""

    def __init__(self, spec: ChannelSpec, gateway: Gateway, client: httpx.AsyncClient
                 ) -> None:
        self.spec, self.gateway, self.client = spec, gateway, client

    @property
    def target(self) -> str:
        return mask(self.spec.to)

    def fields(self, outgoing: Outgoing) -> dict[str, str]:
        text = outgoing.sms()
        if self.spec.kind == "voice":
            text = f"{outgoing.subject}. Warning {outgoing.notification.warning_id}. " \
                   "Acknowledge by replying to the message sent to you, or in Lifeline."
            # Said aloud, often inside a TwiML-like XML template: no markup characters.
            text = text.translate({ord("<"): " ", ord(">"): " ", ord("&"): " and "})
        values = {"to": self.spec.to, "text": text, "ack_url": outgoing.ack_url,
                  "keyword": outgoing.keyword, "warning_id": outgoing.notification.warning_id}
        templates = self.gateway.voice if self.spec.kind == "voice" else self.gateway.sms
        return {key: template.substitute(values) for key, template in templates.items()}

    async def send(self, outgoing: Outgoing) -> None:
        fields = self.fields(outgoing)
        url = self.gateway.voice_url if self.spec.kind == "voice" else self.gateway.sms_url
        auth = (self.gateway.username, self.gateway.password) if self.gateway.username \
            else None
        body: dict[str, object] = {"json": fields} if self.gateway.encoding == "json" \
            else {"data": fields}
        await _post(self.client, url, headers=self.gateway.headers, auth=auth,
                    timeout=self.spec.retry.timeout, **body)
