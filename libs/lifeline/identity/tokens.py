"""Bearer tokens: JWTs signed with Ed25519 (PyJWT), verified against configured keys.

Claims: `sub` (the person or system), `roles`, optional `department`, `iss`, `aud`, `iat`,
`exp`. Lifeline's own tokens (Ed25519, `iss`/`aud` "lifeline") verify against a PEM file of
public keys (several may be concatenated, for rotation); a city's identity provider's
tokens against its JWKS, with the issuer and audience it is configured to put in them.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
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
#: What an identity provider may sign with: asymmetric algorithms only, never a shared secret.
PROVIDER_ALGORITHMS = ["EdDSA", "ES256", "ES384", "RS256", "PS256"]
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


@dataclass(frozen=True)
class Expected:
    """What a signer's tokens must say of themselves."""

    issuer: str = ISSUER
    audience: str = AUDIENCE
    algorithms: tuple[str, ...] = tuple(ALGORITHMS)


class TokenVerifier:
    """Checks a token's signature, issuer, audience and expiry; caches what verified, so
    a caller's stream of requests pays the signature check once per token."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None,
                 jwks_url: str | None = None, cache_size: int = 4096, *,
                 provider: Expected = Expected()) -> None:
        if not keys and not jwks_url:
            raise ValueError("give public keys or a JWKS URL")
        self.keys = keys or []
        self.jwks = jwt.PyJWKClient(jwks_url) if jwks_url else None
        self.provider = provider
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def configured(cls, keys_file: str, jwks_url: str, issuer: str = ISSUER,
                   audience: str = AUDIENCE) -> TokenVerifier:
        """Lifeline's own keys, an identity provider's JWKS, or both."""
        return cls(_public_keys(Path(keys_file)) if keys_file else None, jwks_url or None,
                   provider=Expected(issuer, audience, tuple(PROVIDER_ALGORITHMS)))

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

    def _signers(self, token: str) -> list[tuple[Any, Expected]]:
        """The keys that may have signed the token, each with what its tokens must say: a
        token naming a key (`kid`) is the identity provider's; Lifeline's name none."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("token: not a JWT") from None
        signers: list[tuple[Any, Expected]] = [(key, Expected()) for key in self.keys]
        if self.jwks is not None and (not self.keys or header.get("kid")
                                      or header.get("alg") not in ALGORITHMS):
            signers.append((self._provider_key(header.get("kid")), self.provider))
        signers = [(k, e) for k, e in signers if header.get("alg") in e.algorithms]
        if not signers:
            raise Unauthenticated("token: signed with an algorithm not accepted here")
        return signers

    def _provider_key(self, kid: str | None) -> Any:
        """The provider's key the token names, or its only one when it names none."""
        assert self.jwks is not None
        try:
            if kid:
                return self.jwks.get_signing_key(kid).key
            keys = self.jwks.get_signing_keys()
        except jwt.PyJWKClientError as error:
            raise Unauthenticated(f"token: no signing key for it ({error})") from None
        if len(keys) != 1:
            raise Unauthenticated("token: names no key (kid) and the provider has several")
        return keys[0].key

    def _decode(self, token: str) -> dict[str, Any]:
        options: Any = {"require": ["sub", "exp", "iat", "iss", "aud"]}
        problem = "signature does not verify"
        for key, expected in self._signers(token):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=list(expected.algorithms),
                    audience=expected.audience, issuer=expected.issuer,
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


def _public_keys(path: Path) -> list[Ed25519PublicKey]:
    blocks = _PEM_BLOCK.findall(Path(path).read_bytes())
    keys = [serialization.load_pem_public_key(block) for block in blocks]
    if not keys or not all(isinstance(k, Ed25519PublicKey) for k in keys):
        raise ValueError(f"{path}: expected one or more Ed25519 public keys in PEM")
    return [k for k in keys if isinstance(k, Ed25519PublicKey)]
