"""Tokens from a city's identity provider beside Lifeline's own: the provider's verify
against its JWKS with the issuer and audience it is configured to put in them, Lifeline's
against its keys as always, and neither passes for the other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lifeline.errors import Unauthenticated
from lifeline.identity.tokens import TokenIssuer, TokenVerifier

ISSUER = "https://idp.city.example/realms/emergency"
AUDIENCE = "lifeline-console"
PROVIDER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LIFELINE_KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(PROVIDER_KEY.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks"
    server.shutdown()


@pytest.fixture(scope="module")
def verifier(jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> TokenVerifier:
    keys = tmp_path_factory.mktemp("keys") / "public.pem"
    keys.write_bytes(LIFELINE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return TokenVerifier.configured(str(keys), jwks_url, ISSUER, AUDIENCE)


def from_provider(key: Any = PROVIDER_KEY, algorithm: str = "RS256", kid: str = "k1",
                  **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "chief-li", "roles": ["department"], "department": "fire",
            "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def test_the_providers_token_and_lifelines_own_both_verify(verifier: TokenVerifier) -> None:
    assert verifier.verify(from_provider())["department"] == "fire"
    own = TokenIssuer(LIFELINE_KEY).issue("gauges", ["sensor-gateway"])
    assert verifier.verify(own)["sub"] == "gauges"


def test_a_provider_token_naming_no_key_verifies_against_its_only_key(
        verifier: TokenVerifier) -> None:
    assert verifier.verify(from_provider(kid=""))["sub"] == "chief-li"


@pytest.mark.parametrize(("claims", "said"), [
    ({"aud": "another-app"}, "(?i)audience"),
    ({"iss": "lifeline", "aud": "lifeline"}, "issuer"),  # the provider cannot speak as Lifeline
    ({"roles": "admin"}, "'roles' must be a list"),
])
def test_a_provider_token_saying_the_wrong_thing_is_refused(
        verifier: TokenVerifier, claims: dict[str, Any], said: str) -> None:
    with pytest.raises(Unauthenticated, match=said):
        verifier.verify(from_provider(**claims))


def test_a_token_under_the_providers_key_id_signed_by_someone_else_is_refused(
        verifier: TokenVerifier) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated, match="signature"):
        verifier.verify(from_provider(key=stranger))
    with pytest.raises(Unauthenticated, match="no signing key"):
        verifier.verify(from_provider(kid="k2"))


def test_the_providers_public_key_used_as_a_shared_secret_is_refused(
        verifier: TokenVerifier) -> None:
    """Algorithm confusion: HS256 'signed' with the public key anyone can fetch."""
    public = PROVIDER_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    body = {"sub": "mallory", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE,
            "iat": now, "exp": now + 300}
    with pytest.raises(Unauthenticated):
        verifier.verify(_hs256(body, public))


def _hs256(body: dict[str, Any], secret: bytes) -> str:
    """PyJWT refuses to HMAC-sign with a PEM key; the forgery is built by hand."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = part(json.dumps(body).encode())
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{part(mac)}"


def test_a_path_that_is_not_a_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "keys.pem"
    bad.write_text("not a key")
    with pytest.raises(ValueError, match=r"keys\.pem"):
        TokenVerifier.configured(str(bad), "")
