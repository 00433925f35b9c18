"""Real servers in the test process for monitor's delivery channels: a webhook receiver that
checks Standard Webhooks signatures, an SMTP server with STARTTLS (aiosmtpd), and an SMS and
voice provider implementing the shape of Twilio's Messages and Calls APIs
(https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource:
form-encoded To, From, Body; HTTP basic auth with the account SID and token; 201 with the
message's JSON). Each can be made to refuse, fail (HTTP 500), or answer slowly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import ssl
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from lifeline.identity.tls import make_local_ca
from lifeline.processes import free_port
from lifeline_monitor.channels.endpoint import QuietServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

T = TypeVar("T")


class HttpServer:
    """A Starlette app under uvicorn on a loopback port, in this event loop; stopped, the
    port refuses connections; started again, it listens on the same port."""

    def __init__(self, app: Starlette) -> None:
        self.app, self.port = app, free_port()
        self.server: QuietServer | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = QuietServer(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                 lifespan="off", log_level="warning"))
        self.task = asyncio.create_task(self.server.serve())
        deadline = asyncio.get_running_loop().time() + 30
        while not self.server.started:  # uvicorn says nothing else when it listens
            if self.task.done() or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the test server on port {self.port} did not start")
            await asyncio.sleep(0.01)  # the poll interval, bounded above

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


@dataclass
class Behaviour:
    """How a test server answers now: ok, fail (HTTP 500) or slow (waits `delay` s)."""

    mode: str = "ok"
    delay: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    data: Any = None
    #: time.perf_counter() when it arrived (one clock for the whole process).
    at: float = field(default_factory=time.perf_counter)


@dataclass
class Mail:
    over_tls: bool
    recipients: list[str]
    message: EmailMessage
    at: float = field(default_factory=time.perf_counter)


@dataclass
class WebhookReceiver:
    """Receives webhooks and checks each signature with the secret it shares with monitor."""

    secret: str = field(default_factory=lambda: "whsec_" + base64.b64encode(
        secrets.token_bytes(24)).decode())
    behaviour: Behaviour = field(default_factory=Behaviour)
    received: list[Received] = field(default_factory=list)
    tries: int = 0

    def __post_init__(self) -> None:
        self.http = HttpServer(Starlette(routes=[Route("/hook", self.hook, methods=["POST"])]))

    @property
    def url(self) -> str:
        return f"{self.http.url}/hook"

    async def hook(self, request: Request) -> Response:
        self.tries += 1
        body = await request.body()
        if self.behaviour.mode == "slow":
            await asyncio.sleep(self.behaviour.delay)  # the point: a slow server
        if self.behaviour.mode == "fail":
            return Response("broken", 500)
        try:
            data = Webhook(self.secret).verify(body, dict(request.headers),
                                               json_parse=request.headers.get(
                                                   "content-type") != "application/cap+xml")
            verified = True
        except WebhookVerificationError:
            data, verified = None, False
        self.received.append(Received(dict(request.headers), body, verified, data))
        return Response(status_code=204 if verified else 401)


class _Sink:
    def __init__(self, owner: SmtpSink) -> None:
        self.owner = owner

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.owner.behaviour.mode == "fail":
            return "451 4.3.0 mailbox temporarily unavailable"
        if self.owner.behaviour.mode == "slow":
            await asyncio.sleep(self.owner.behaviour.delay)  # the point: a slow server
        content = envelope.content or b""
        mail = message_from_bytes(content if isinstance(content, bytes) else content.encode(),
                                  policy=policy.default)
        assert isinstance(mail, EmailMessage)
        with self.owner.lock:
            self.owner.mails.append(Mail(session.ssl is not None, list(envelope.rcpt_tos), mail))
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd, in its own thread) that requires STARTTLS and keeps
    every mail it accepts, with whether it came over TLS."""

    def __init__(self, certs: Path) -> None:
        make_local_ca(certs)
        self.ca_file = str(certs / "ca.pem")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs / "server.pem", certs / "server.key")
        self.behaviour = Behaviour()
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(_Sink(self), hostname="127.0.0.1", port=self.port,
                                     tls_context=context, require_starttls=True)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m.message for m in self.mails if address in m.recipients]


class SmsProvider:
    """Twilio-shaped Messages and Calls APIs: POST
    /2010-04-01/Accounts/{sid}/Messages.json (To, From, Body) and .../Calls.json (To, From,
    Twiml), basic auth, 201 with the resource; 400 with Twilio's error shape when To is
    missing."""

    def __init__(self) -> None:
        self.sid, self.token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        self.behaviour = Behaviour()
        self.messages: list[dict[str, str]] = []
        self.calls: list[dict[str, str]] = []
        base = "/2010-04-01/Accounts/{sid}"
        self.http = HttpServer(Starlette(routes=[
            Route(f"{base}/Messages.json", self.create, methods=["POST"]),
            Route(f"{base}/Calls.json", self.create, methods=["POST"])]))

    def url(self, resource: str) -> str:
        return f"{self.http.url}/2010-04-01/Accounts/{self.sid}/{resource}.json"

    async def create(self, request: Request) -> Response:
        if self.behaviour.mode == "slow":
            await asyncio.sleep(self.behaviour.delay)  # the point: a slow server
        if self.behaviour.mode == "fail":
            return JSONResponse({"code": 20500, "message": "Internal Server Error",
                                 "status": 500}, 500)
        expected = base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if request.path_params["sid"] != self.sid or \
                request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not form.get("To"):
            return JSONResponse({"code": 21604, "message": "A 'To' phone number is required.",
                                 "status": 400}, 400)
        calls = request.url.path.endswith("Calls.json")
        (self.calls if calls else self.messages).append(form)
        prefix = "CA" if calls else "SM"
        return JSONResponse({"sid": prefix + secrets.token_hex(16), "status": "queued",
                             "to": form["To"], "from": form.get("From", "")}, 201)


class Background:
    """An event loop in a thread of its own, for servers that synchronous tests use."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextlib.asynccontextmanager
async def running(*servers: HttpServer) -> AsyncIterator[None]:
    for server in servers:
        await server.start()
    try:
        yield
    finally:
        for server in servers:
            await server.stop()
