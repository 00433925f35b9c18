"""Signed, expiring acknowledgement links (a JWT signed with HMAC-SHA256 naming the
warning, the party and the colour it was sent for) and the short codes of SMS replies."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
AUDIENCE = "lifeline-monitor-ack"


class LinkRefused(Exception):
    """A link or reply that acknowledges nothing, with the HTTP status that says why:
    403 forged or not for this person, 410 expired, 409 already acknowledged or moved on."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Claim:
    """What a valid link says: this party may acknowledge this warning at this colour."""

    warning_id: str
    party: str
    level: int
    #: Unique per link (a receiver's logs can tell links apart).
    link_id: str
    channel: str


class Links:
    def __init__(self, secret: str, minutes: float,
                 clock: Callable[[], float] = time.time) -> None:
        # No secret configured: a random one, so links die with a restart, never forgeable.
        self.key = (secret or secrets.token_urlsafe(32)).encode()
        self.seconds, self.clock = minutes * 60, clock

    def token(self, warning_id: str, party: str, level: int, channel: str) -> str:
        now = int(self.clock())
        return jwt.encode({"w": warning_id, "p": party, "l": level, "c": channel,
                           "jti": secrets.token_urlsafe(12), "aud": AUDIENCE, "iat": now,
                           "exp": now + int(self.seconds)}, self.key, ALGORITHM)

    def check(self, token: str) -> Claim:
        if len(token) > 2048:
            raise LinkRefused("this link is not one of ours")
        try:
            # Expiry is checked below, on this class's clock.
            claims = jwt.decode(token, self.key, [ALGORITHM], audience=AUDIENCE,
                                options={"require": ["exp", "jti", "aud"], "verify_exp": False,
                                         "verify_iat": False})
        except jwt.PyJWTError:
            raise LinkRefused("this link is not one of ours") from None
        if not isinstance(claims["exp"], int) or claims["exp"] < self.clock():
            raise LinkRefused("this link has expired; acknowledge in Lifeline or use a newer "
                              "message", 410)
        try:
            return Claim(str(claims["w"]), str(claims["p"]), int(claims["l"]),
                         str(claims["jti"]), str(claims.get("c", "")))
        except (KeyError, TypeError, ValueError):
            raise LinkRefused("this link is not one of ours") from None

    def code(self, warning_id: str, party: str) -> str:
        """Six digits for an SMS reply, the same every time for this party and warning."""
        digest = hmac.new(self.key, f"{warning_id}|{party}".encode(), hashlib.sha256).digest()
        return f"{int.from_bytes(digest[:4], 'big') % 1_000_000:06d}"
