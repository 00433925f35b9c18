"""Who is signed in: a session per browser, opened with a bearer token the services
themselves accept, so every action the console forwards is that person's own.

A sign-in link carries a freshly issued token in its fragment (never sent to a server or
written to a log); the page posts it once. A token opens one session only, and a link's
token only while it is fresh: a link found later in a browser's history opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from lifeline.errors import Unauthenticated
from lifeline.identity.tokens import TokenVerifier

#: How long after it was issued a sign-in link still opens a session.
LINK_SECONDS = 600
#: Sessions kept at once; the oldest is closed past this.
MAX_SESSIONS = 10_000
COOKIE = "lifeline_session"


@dataclass
class Session:
    id: str
    token: str
    name: str
    roles: frozenset[str]
    department: str
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "roles": sorted(self.roles), "department": self.department,
                "csrf": self.csrf, "expires_at": int(self.expires_at)}


class Sessions:
    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier
        self._open: dict[str, Session] = {}
        #: Tokens that opened a session, until they expire: none opens a second.
        self._used: dict[str, float] = {}

    def sign_in(self, token: str, *, from_link: bool, nonce: str | None = None) -> Session:
        """A session for the token's holder; Unauthenticated saying why not. An identity
        provider's ID token carries the nonce its sign-in was started with."""
        claims = self.verifier.verify(token)
        now = time.time()
        if from_link and now - float(claims.get("iat", 0)) > LINK_SECONDS:
            raise Unauthenticated("this sign-in link has expired; ask for a new one")
        if nonce is not None and claims.get("nonce") != nonce:
            raise Unauthenticated("the identity provider's answer is not for this sign-in")
        self._forget_expired(now)
        used = hashlib.sha256(token.encode()).hexdigest()
        if used in self._used:
            raise Unauthenticated("this token or link was already used to sign in; "
                                  "sign in with a new one")
        self._used[used] = float(claims["exp"])
        session = Session(secrets.token_urlsafe(32), token, str(claims["sub"]),
                          frozenset(claims.get("roles", ())), str(claims.get("department", "")),
                          float(claims["exp"]))
        if len(self._open) >= MAX_SESSIONS:
            del self._open[next(iter(self._open))]
        self._open[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._open.get(session_id or "")
        if session is not None and session.expires_at <= time.time():
            del self._open[session.id]
            return None
        return session

    def sign_out(self, session_id: str | None) -> None:
        self._open.pop(session_id or "", None)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, expires in self._used.items() if expires <= now]:
            del self._used[key]
