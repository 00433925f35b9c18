"""Bearer tokens: JWTs signed with Ed25519 (PyJWT), verified against configured keys.

Claims: `sub` (the person or system), `roles`, optional `department`, `iss`/`aud` fixed to
Lifeline, `iat`, `exp`. Keys come from a PEM file of public keys (several may be
concatenated, for rotation) or a JWKS URL.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lifeline.errors import Unauthenticated

ISSUER = "lifeline"
AUDIENCE = "lifeline"
ALGORITHMS = ["EdDSA"]
LEEWAY_SECONDS = 30
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def parse_ttl(text: str) -> timedelta:
    """'8h', '30m', '7d', '90s' -> a timedelta."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 8h, 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


class TokenIssuer:
    """Signs tokens with a private key (a dev stack's, or an identity provider's)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.key = private_key

    @classmethod
    def from_file(cls, path: Path) -> TokenIssuer:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return cls(key)

    def issue(self, name: str, roles: Iterable[str], *, department: str = "",
              ttl: timedelta = timedelta(hours=8)) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": name, "roles": sorted(set(roles)), "iss": ISSUER,
                                  "aud": AUDIENCE, "iat": now,
                                  "exp": now + int(ttl.total_seconds())}
        if department:
            claims["department"] = department
        return jwt.encode(claims, self.key, algorithm="EdDSA")


class TokenVerifier:
    """Checks a token's signature, issuer, audience and expiry; caches what verified, so
    a caller's stream of requests pays the signature check once per token."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None,
                 jwks_url: str | None = None, cache_size: int = 4096) -> None:
        if not keys and not jwks_url:
            raise ValueError("give public keys or a JWKS URL")
        self.keys = keys or []
        self.jwks = jwt.PyJWKClient(jwks_url) if jwks_url else None
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_file(cls, path: Path) -> TokenVerifier:
        blocks = _PEM_BLOCK.findall(Path(path).read_bytes())
        keys = [serialization.load_pem_public_key(block) for block in blocks]
        if not keys or not all(isinstance(k, Ed25519PublicKey) for k in keys):
            raise ValueError(f"{path}: expected one or more Ed25519 public keys in PEM")
        return cls([k for k in keys if isinstance(k, Ed25519PublicKey)])

    def verify(self, token: str) -> dict[str, Any]:
        claims = self._cache.get(token)
        if claims is not None and claims["exp"] > time.time() - LEEWAY_SECONDS:
            self._cache.move_to_end(token)
            return claims
        claims = self._decode(token)
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["sub", "exp", "iat", "iss", "aud"]}
        keys: list[Any] = list(self.keys)
        if self.jwks is not None:
            try:
                keys.append(self.jwks.get_signing_key_from_jwt(token).key)
            except jwt.PyJWKClientError as error:
                raise Unauthenticated(f"token: no signing key for it ({error})") from None
            except jwt.DecodeError:
                raise Unauthenticated("token: not a JWT") from None
        problem = "signature does not verify"
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=ALGORITHMS, audience=AUDIENCE, issuer=ISSUER,
                    leeway=LEEWAY_SECONDS, options=options)
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("token expired; get a new one "
                                      "(`lifeline token`)") from None
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as error:
                problem = str(error)[:120]
                break
            roles = claims.get("roles")
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise Unauthenticated("token: 'roles' must be a list of role names")
            return claims
        raise Unauthenticated(f"token: {problem}")
