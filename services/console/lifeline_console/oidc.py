"""Sign-in through the city's OpenID Connect provider: the authorization code flow with
PKCE (S256), a state bound to the browser that started it, and a nonce; two HTTP requests.

The ID token that comes back is the person's bearer token from then on, verified like every
token (PyJWT, the provider's JWKS, `LIFELINE_AUTH_JWKS_*`) by the console and the services,
so what the person does is recorded under the provider's `sub` with the provider's `roles`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from lifeline.errors import Unauthenticated

#: How long a started sign-in may take at the provider.
PENDING_SECONDS = 600
#: Sign-ins under way at once; the oldest is dropped past this.
MAX_PENDING = 10_000
#: The cookie that binds a sign-in's state to the browser that started it.
STATE_COOKIE = "lifeline_oidc_state"


@dataclass(frozen=True)
class Pending:
    verifier: str
    nonce: str
    next: str
    started: float


class Provider:
    def __init__(self, issuer: str, client_id: str, client_secret: str = "") -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self._metadata: dict[str, Any] | None = None
        self._pending: dict[str, Pending] = {}

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, fetched once it is first needed."""
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    answer = await http.get(url)
                    answer.raise_for_status()
                    self._metadata = answer.json()
            except (httpx.HTTPError, ValueError) as error:
                raise Unauthenticated(f"the identity provider at {self.issuer} did not "
                                      f"answer ({type(error).__name__}); try again") from None
        return self._metadata

    async def start(self, redirect_uri: str, next_page: str) -> tuple[str, str]:
        """The provider's URL to send the browser to, and the state to bind to it."""
        authorize = (await self.metadata())["authorization_endpoint"]
        state, verifier, nonce = (secrets.token_urlsafe(n) for n in (24, 48, 24))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {"response_type": "code", "client_id": self.client_id, "scope": "openid profile",
                 "redirect_uri": redirect_uri, "state": state, "nonce": nonce,
                 "code_challenge": challenge.rstrip(b"=").decode(),
                 "code_challenge_method": "S256"}
        self._forget_stale()
        if len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        self._pending[state] = Pending(verifier, nonce, next_page, time.monotonic())
        return f"{authorize}{'&' if '?' in authorize else '?'}{urlencode(query)}", state

    async def finish(self, redirect_uri: str, state: str, code: str, bound: str
                     ) -> tuple[str, Pending]:
        """Exchange the code for the person's ID token; Unauthenticated saying why not."""
        if not state or not secrets.compare_digest(state.encode(), bound.encode()):
            raise Unauthenticated("this sign-in was not started in this browser; start again")
        pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.started > PENDING_SECONDS:
            raise Unauthenticated("this sign-in has expired or was used; start again")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": pending.verifier, "client_id": self.client_id}
        # A confidential client authenticates with HTTP Basic; a public one by PKCE alone.
        auth = httpx.BasicAuth(self.client_id, self.client_secret) if self.client_secret \
            else None
        try:
            async with httpx.AsyncClient(timeout=10, auth=auth) as http:
                answer = await http.post((await self.metadata())["token_endpoint"], data=form,
                                         headers={"Accept": "application/json"})
            token = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise Unauthenticated(f"the identity provider did not answer "
                                  f"({type(error).__name__}); try again") from None
        if not answer.is_success or not isinstance(token, dict):
            said = token.get("error", answer.status_code) if isinstance(token, dict) else \
                answer.status_code
            raise Unauthenticated(f"the identity provider refused the sign-in: {said}")
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated("the identity provider returned no ID token")
        return id_token, pending

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for state in [s for s, p in self._pending.items()
                      if now - p.started > PENDING_SECONDS]:
            del self._pending[state]
