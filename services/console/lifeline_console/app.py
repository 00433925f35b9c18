"""The console's web face: pages, the live picture as server-sent events, sign-in, and each
person's actions forwarded to the services with their own token."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import grpc
from lifeline.errors import Unauthenticated
from lifeline.grpcutil import channel, client_credentials
from lifeline.identity.roles import RoleMatrix
from lifeline.identity.tokens import TokenVerifier
from lifeline.settings import Environment
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifeline_console import actions, basemap, oidc
from lifeline_console.feeds import Feeds
from lifeline_console.picture import Change, Picture
from lifeline_console.sessions import COOKIE, Session, Sessions

STATIC = Path(__file__).with_name("static")
#: The largest request body the console reads.
MAX_BODY = 64 * 1024
#: How long an event stream waits for a change before it sends a keep-alive.
PING_SECONDS = 15
SERVICES = ("monitor", "dispatch", "resources", "review")


class Console:
    """The state one console process serves from."""

    def __init__(self, settings: Environment) -> None:
        self.settings = settings
        self.picture = Picture()
        if not settings.auth_keys and not settings.auth_jwks_url:
            raise ValueError("LIFELINE_AUTH_KEYS or LIFELINE_AUTH_JWKS_URL: the console "
                             "needs the keys that sign people's tokens")
        self.sessions = Sessions(TokenVerifier.configured(
            settings.auth_keys, settings.auth_jwks_url, settings.auth_jwks_issuer,
            settings.auth_jwks_audience))
        secret = settings.console_oidc_client_secret_file
        self.provider = oidc.Provider(
            settings.console_oidc_issuer, settings.console_oidc_client_id,
            secret.read_text().strip() if secret else "") \
            if settings.console_oidc_issuer else None
        self.matrix = RoleMatrix.load()
        files = [Path(f) for f in settings.console_basemap] or basemap.shipped()
        self.basemap = basemap.load(files, settings.grid_resolution)
        self.basemap["tiles"] = settings.console_tiles
        token = settings.console_token_file
        self.token = token.read_text().strip() if token else ""
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.feeds: Feeds | None = None
        #: Whether every watch has been live at least once (the first whole picture).
        self.ready = False

    async def start(self) -> None:
        """Channels and watches live in the running event loop (grpc.aio's rule)."""
        ca = Path(self.settings.tls_ca).read_bytes() if self.settings.tls_ca else None
        self.channels = {name: channel(self.settings.address_of(name), client_credentials(ca))
                         for name in SERVICES}
        self.feeds = Feeds(self.picture, self.channels, self.token)
        self.feeds.start()

    async def stop(self) -> None:
        if self.feeds is not None:
            await self.feeds.stop()
        for open_channel in self.channels.values():
            await open_channel.close()


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def signed_in(handler: Callable[[Request, Session], Awaitable[Response]]
              ) -> Callable[[Request], Awaitable[Response]]:
    """Only for a signed-in session; a POST also needs the session's CSRF token and, when
    the browser names one, this console's own origin."""

    async def guarded(request: Request) -> Response:
        console: Console = request.app.state.console
        session = console.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return error(401, "UNAUTHENTICATED", "sign in first")
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.url.netloc:
                return error(403, "PERMISSION_DENIED", f"requests from {origin} are refused")
            given = request.headers.get("x-csrf-token", "").encode()  # bytes: any header
            if not secrets.compare_digest(given, session.csrf.encode()):
                return error(403, "PERMISSION_DENIED",
                             "missing or wrong X-CSRF-Token: reload the page")
        return await handler(request, session)

    return guarded


async def read_json(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise actions.Refused(413, "INVALID_ARGUMENT",
                                  f"the body is over {MAX_BODY // 1024} KiB")
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise actions.Refused(400, "INVALID_ARGUMENT", "the body is not JSON") from None


async def sign_in(request: Request) -> Response:
    console: Console = request.app.state.console
    try:
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return error(400, "INVALID_ARGUMENT", "token: give the bearer token to sign in with")
        session = console.sessions.sign_in(token.strip(), from_link=bool(body.get("link")))
    except actions.Refused as refused:
        return error(refused.status, refused.code, refused.message)
    except Unauthenticated as refused:
        return error(401, "UNAUTHENTICATED", str(refused))
    return _open_session(session, JSONResponse(me_of(console, session)))


def _open_session(session: Session, response: Response) -> Response:
    response.set_cookie(COOKIE, session.id, max_age=int(session.expires_at - time.time()),
                        httponly=True, secure=True, samesite="strict", path="/")
    return response


async def sign_in_methods(request: Request) -> Response:
    provider = request.app.state.console.provider
    return JSONResponse({"provider": provider.issuer if provider else None})


def _next_page(wanted: str | None) -> str:
    """Only a page of this console: no other site, and no `//` or `/\\` (which browsers
    read as another site's address)."""
    return wanted if wanted and wanted[:1] == "/" and wanted[1:2] not in ("/", "\\") \
        else "/"


async def oidc_start(request: Request) -> Response:
    provider: oidc.Provider | None = request.app.state.console.provider
    if provider is None:
        return error(404, "NOT_FOUND", "no identity provider is configured "
                                       "(LIFELINE_CONSOLE_OIDC_ISSUER)")
    try:
        url, state = await provider.start(str(request.url_for("oidc_callback")),
                                          _next_page(request.query_params.get("next")))
    except Unauthenticated as refused:
        return error(503, "UNAVAILABLE", str(refused))
    response = RedirectResponse(url, status_code=303)
    # Lax: the provider sends the browser back with a top-level GET from its own site.
    response.set_cookie(oidc.STATE_COOKIE, state, max_age=oidc.PENDING_SECONDS,
                        httponly=True, secure=True, samesite="lax", path="/signin/oidc")
    return response


async def oidc_callback(request: Request) -> Response:
    console: Console = request.app.state.console
    provider = console.provider
    if provider is None:
        return error(404, "NOT_FOUND", "no identity provider is configured")
    query = request.query_params
    try:
        if "error" in query:
            raise Unauthenticated(f"the identity provider said {query['error'][:60]}: "
                                  f"{query.get('error_description', '')[:200]}")
        token, pending = await provider.finish(
            str(request.url_for("oidc_callback")), query.get("state", ""),
            query.get("code", ""), request.cookies.get(oidc.STATE_COOKIE, ""))
        session = console.sessions.sign_in(token, from_link=False, nonce=pending.nonce)
    except Unauthenticated as refused:
        return RedirectResponse(f"/signin?{urlencode({'problem': str(refused)})}",
                                status_code=303)
    response = RedirectResponse(pending.next, status_code=303)
    response.delete_cookie(oidc.STATE_COOKIE, path="/signin/oidc", secure=True, httponly=True,
                           samesite="lax")
    return _open_session(session, response)


def me_of(console: Console, session: Session) -> dict[str, Any]:
    return {**session.public(),
            "actions": actions.allowed(console.matrix, session.roles, session.department)}


@signed_in
async def me(request: Request, session: Session) -> Response:
    return JSONResponse(me_of(request.app.state.console, session))


@signed_in
async def sign_out(request: Request, session: Session) -> Response:
    request.app.state.console.sessions.sign_out(session.id)
    response = JSONResponse({"signed_out": session.name})
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@signed_in
async def base(request: Request, session: Session) -> Response:
    return JSONResponse(request.app.state.console.basemap)


def _changes(changes: list[Change]) -> dict[str, Any]:
    return {"event": "changes", "id": str(changes[-1].seq), "data": json.dumps(
        [{"seq": c.seq, "kind": c.kind, "key": c.key, "doc": c.doc} for c in changes])}


@signed_in
async def events(request: Request, session: Session) -> Response:
    """The picture as it changes. The first event is a snapshot, or, for a browser that
    reconnects (Last-Event-ID), the changes it missed; then changes as they come."""
    picture: Picture = request.app.state.console.picture
    last = request.headers.get("last-event-id") or request.query_params.get("after")

    async def stream() -> AsyncIterator[dict[str, Any]]:
        seq = int(last) if last and last.isdigit() else -1
        while True:
            missed = picture.since(seq) if seq >= 0 else None
            if missed is None:
                seq, things = picture.snapshot()
                yield {"event": "snapshot", "id": str(seq),
                       "data": json.dumps({"seq": seq, "things": things})}
            elif missed:
                seq = missed[-1].seq
                yield _changes(missed)
            await picture.wait_after(seq, PING_SECONDS)

    return EventSourceResponse(stream(), ping=PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


@signed_in
async def act(request: Request, session: Session) -> Response:
    console: Console = request.app.state.console
    name = request.path_params["name"]
    action = actions.ACTIONS.get(name)
    if action is None:
        return error(404, "NOT_FOUND", f"no action {name!r}; one of {', '.join(actions.ACTIONS)}")
    try:
        body = await read_json(request)
    except actions.Refused as refused:
        return error(refused.status, refused.code, refused.message)
    return await _forward(console, action, body, session,
                          request.headers.get("idempotency-key", ""))


@signed_in
async def incident_history(request: Request, session: Session) -> Response:
    return await _forward(request.app.state.console, actions.READS["incident-history"],
                          {"incident_id": request.path_params["incident_id"]}, session)


@signed_in
async def city_as_of(request: Request, session: Session) -> Response:
    return await _forward(request.app.state.console, actions.READS["city-as-of"],
                          {"as_of": request.query_params.get("as_of", "")}, session)


async def _forward(console: Console, action: actions.Action, body: Any, session: Session,
                   idempotency_key: str = "") -> Response:
    try:
        message = actions.parse(action, body)
        answer = await actions.call(console.channels[action.service], action, message,
                                    session.token, idempotency_key)
    except actions.Refused as refused:
        return error(refused.status, refused.code, refused.message)
    return JSONResponse(answer)


async def health(request: Request) -> Response:
    feeds = request.app.state.console.picture.things["feed"]
    console: Console = request.app.state.console
    live = all(f.get("state") == "live" for f in feeds.values()) and len(feeds) == 3
    console.ready = console.ready or live
    # 503 until the first whole picture, so a readiness probe reading the code alone sends no
    # one to an empty console; later a broken watch keeps it in service (the page says what
    # is missing, and shows the rest).
    return JSONResponse({"status": "SERVING" if live else "CONNECTING", "feeds": feeds},
                        status_code=200 if console.ready else 503)


def page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    return serve


class SecurityHeaders:
    """A strict Content-Security-Policy and the usual hardening headers on every answer."""

    def __init__(self, app: ASGIApp, tiles: str = "") -> None:
        self.app = app
        tile_origin = ""
        if tiles:
            parts = urlsplit(tiles)
            tile_origin = f" {parts.scheme}://{parts.netloc}"
        self.headers = [
            (b"content-security-policy", (
                "default-src 'none'; script-src 'self'; style-src 'self'; "
                f"img-src 'self' data:{tile_origin}; connect-src 'self'; font-src 'self'; "
                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'").encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"strict-transport-security", b"max-age=31536000"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Environment) -> Starlette:
    console = Console(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await console.start()
        try:
            yield
        finally:
            await console.stop()

    app = Starlette(routes=[
        Route("/", page("index.html")),
        Route("/responder", page("responder.html")),
        Route("/signin", page("signin.html")),
        Route("/healthz", health),
        Route("/signin/oidc", oidc_start),
        Route("/signin/oidc/callback", oidc_callback, name="oidc_callback"),
        Route("/api/signin", sign_in, methods=["POST"]),
        Route("/api/signin/methods", sign_in_methods),
        Route("/api/signout", sign_out, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/basemap", base),
        Route("/api/events", events),
        Route("/api/actions/{name}", act, methods=["POST"]),
        Route("/api/incidents/{incident_id}/history", incident_history),
        Route("/api/city", city_as_of),
        Mount("/static", StaticFiles(directory=STATIC)),
    ], lifespan=lifespan)
    app.state.console = console
    app.add_middleware(SecurityHeaders, tiles=settings.console_tiles)
    return app
