"""Monitor's small HTTP endpoint (Starlette under uvicorn, in monitor's process, on its own
listen address `LIFELINE_ACK_LISTEN`): the acknowledgement links people open (GET shows
the warning and a button, POST acknowledges: a mail scanner that fetches links
acknowledges nothing) and the SMS gateway's inbound webhook for replies. Bodies are
bounded, signatures checked, and hostile input answered 4xx, never 5xx."""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import parse_qs

import uvicorn
from lifeline.errors import LifelineError, NotFound, RuleViolation, Unavailable
from lifeline.monitor.v1 import monitor_pb2 as pb
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lifeline_monitor.channels.config import Channels
from lifeline_monitor.channels.links import Claim, LinkRefused, Links
from lifeline_monitor.channels.message import COLOUR

log = logging.getLogger(__name__)
#: Inbound bodies larger than this are refused (413), read no further.
MAX_BODY = 16 * 1024
REPLY = re.compile(r"^\s*ack\s+(\d{6})\s*$", re.IGNORECASE)

#: Acknowledge a checked claim; answers the warning as it now is.
Acknowledge = Callable[[Claim], Awaitable[pb.Warning]]
#: A party's waiting notifications (for an SMS reply's code).
Waiting = Callable[[str], Awaitable[list[pb.PartyNotification]]]


class BodyTooLarge(Exception):
    pass


async def bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            raise BodyTooLarge
    return bytes(body)


def page(title: str, text: str, status: int = 200, form: str = "") -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title></head><body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f"{form}</body></html>", status)


def refused(error: Exception) -> tuple[int, str]:
    """The HTTP status and message for a refusal (4xx), or 503 when monitor cannot write."""
    if isinstance(error, LinkRefused):
        return error.status, str(error)
    if isinstance(error, NotFound):
        return 404, str(error)
    if isinstance(error, RuleViolation):
        return 409, str(error)
    if isinstance(error, Unavailable):
        return 503, "Lifeline cannot record it right now; try again in a minute"
    assert isinstance(error, LifelineError)
    return 400, str(error)


def build_app(links: Links, channels: Channels, acknowledge: Acknowledge,
              waiting: Waiting) -> Starlette:
    inbound = Webhook(channels.gateway.inbound_secret) \
        if channels.gateway is not None and channels.gateway.inbound_secret else None

    async def show(request: Request) -> Response:
        try:
            claim = links.check(request.path_params["token"])
        except LinkRefused as error:
            return page("Link refused", str(error), error.status)
        return page(f"Acknowledge warning {claim.warning_id}",
                    f"{COLOUR.get(claim.level, '')} warning {claim.warning_id}, sent to "
                    f"{claim.party} by {claim.channel or 'message'}.",
                    form="<form method='post'><button type='submit'>Acknowledge as "
                         f"{html.escape(claim.party)}</button></form>")

    async def ack(request: Request) -> Response:
        try:
            await bounded_body(request)
            claim = links.check(request.path_params["token"])
            warning = await acknowledge(claim)
        except BodyTooLarge:
            return page("Refused", "the request is too large", 413)
        except (LinkRefused, LifelineError) as error:
            status, message = refused(error)
            return page("Not acknowledged", message, status)
        return page("Acknowledged", f"warning {warning.id} is acknowledged by {claim.party} "
                                    f"through {claim.channel}; the escalation stops.")

    async def sms_reply(request: Request) -> Response:
        if inbound is None:
            return PlainTextResponse("no SMS gateway is configured", 404)
        try:
            body = await bounded_body(request)
        except BodyTooLarge:
            return PlainTextResponse("too large", 413)
        try:
            inbound.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            return PlainTextResponse("signature refused", 401)
        sender, text = reply_of(body, request.headers.get("content-type", ""))
        party = channels.party_of_number(sender) if sender else None
        if party is None:
            return JSONResponse({"acknowledged": False,
                                 "reason": "not the number of anyone notified"}, 403)
        match = REPLY.match(text)
        if match is None:
            return JSONResponse({"acknowledged": False,
                                 "reason": "reply ACK and the six digits of the message"}, 422)
        try:
            for n in await waiting(party):
                if links.code(n.warning_id, party) == match.group(1):
                    warning = await acknowledge(Claim(n.warning_id, party, n.level, "",
                                                      "sms"))
                    return JSONResponse({"acknowledged": True, "warning_id": warning.id,
                                         "by": party})
        except (LinkRefused, LifelineError) as error:
            status, message = refused(error)
            return JSONResponse({"acknowledged": False, "reason": message}, status)
        return JSONResponse({"acknowledged": False,
                             "reason": "no warning waits for you with that code"}, 409)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[
        Route("/ack/{token}", show, methods=["GET"]),
        Route("/ack/{token}", ack, methods=["POST"]),
        Route("/sms/inbound", sms_reply, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])


def reply_of(body: bytes, content_type: str) -> tuple[str, str]:
    """(sender, text) of a gateway's inbound message: JSON {"from", "text"} or a form with
    From and Body (the way Twilio-style gateways post)."""
    try:
        if "json" in content_type:
            data = json.loads(body)
            if isinstance(data, dict):
                return str(data.get("from", ""))[:32], str(data.get("text", ""))[:320]
            return "", ""
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return (form.get("From", [""])[0][:32], form.get("Body", [""])[0][:320])


class QuietServer(uvicorn.Server):
    """uvicorn inside a service: the service owns SIGTERM and SIGINT, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Endpoint:
    """The endpoint's socket (bound at once, so links know its address) and server."""

    def __init__(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host.strip("[]") or "127.0.0.1", int(port or 0)))
        self.host, self.port = self.socket.getsockname()[:2]
        self.server: QuietServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, app: Starlette) -> None:
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                limit_concurrency=200, timeout_keep_alive=5)
        self.server = QuietServer(config)
        log.info("acknowledgement endpoint on %s", self.url)
        await self.server.serve(sockets=[self.socket])
