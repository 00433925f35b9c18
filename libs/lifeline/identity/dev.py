"""The credentials a local stack runs with, made once under its state directory:

    tls/ca.pem, tls/server.pem, tls/server.key   a local CA and the loopback certificate
    auth/signing.key, auth/signing.pub           the token signing key pair (Ed25519)
    auth/token                                   a token for the local user (all roles but
                                                 department), which the CLIs pick up
    nats/users.json                              a password per NATS user

Development tooling: production gets its keys, certificates and NATS users from its
secret store (deploy/k8s).
"""

from __future__ import annotations

import getpass
import json
import secrets
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lifeline.identity import nats as natsauth
from lifeline.identity.roles import RoleMatrix
from lifeline.identity.tls import make_local_ca, write_private
from lifeline.identity.tokens import TokenIssuer

#: Roles of the local user's token: everything an operator at a dev stack may want to try,
#: except `department`, which needs a department name.
LOCAL_USER_ROLES = ("viewer", "operator", "commander", "evaluator", "admin", "call-taker",
                    "sensor-gateway")


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "operator"


class DevAuthority:
    def __init__(self, directory: Path) -> None:
        self.root = Path(directory).resolve()
        self.tls_dir, self.auth_dir = self.root / "tls", self.root / "auth"
        self.users_file = self.root / "nats" / "users.json"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def signing_key(self) -> Path:
        return self.auth_dir / "signing.key"

    @property
    def public_key(self) -> Path:
        return self.auth_dir / "signing.pub"

    @property
    def token_file(self) -> Path:
        return self.auth_dir / "token"

    def ensure(self) -> DevAuthority:
        """Make whatever is missing; keep what exists (a restarted stack keeps its keys)."""
        make_local_ca(self.tls_dir)
        self.auth_dir.mkdir(parents=True, exist_ok=True)
        if not self.signing_key.exists():
            key = Ed25519PrivateKey.generate()
            write_private(self.signing_key, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            self.public_key.write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        if not self.users_file.exists():
            self.users_file.parent.mkdir(parents=True, exist_ok=True)
            users = {name: secrets.token_urlsafe(24)
                     for name in [*natsauth.LISTENS_TO, natsauth.OBSERVER,
                                  natsauth.STREAM_ADMIN]}
            write_private(self.users_file, json.dumps(users, indent=2).encode())
        write_private(self.token_file, self.token(
            local_user(), LOCAL_USER_ROLES, ttl=timedelta(days=7)).encode())
        return self

    def token(self, name: str, roles: tuple[str, ...] | list[str], *, department: str = "",
              ttl: timedelta = timedelta(hours=8)) -> str:
        known = RoleMatrix.load().roles
        unknown = [r for r in roles if r not in known]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r}; one of {', '.join(known)}")
        if "department" in roles and not department:
            raise ValueError("the department role needs --department")
        return TokenIssuer.from_file(self.signing_key).issue(name, roles, department=department,
                                                             ttl=ttl)

    def nats_passwords(self) -> dict[str, str]:
        passwords: dict[str, str] = json.loads(self.users_file.read_text())
        return passwords

    def nats_config(self) -> str:
        return natsauth.server_config(passwords=self.nats_passwords(),
                                      tls_cert=str(self.tls_dir / "server.pem"),
                                      tls_key=str(self.tls_dir / "server.key"))

    def service_env(self, service: str) -> dict[str, str]:
        """What one service process is configured with (see lifeline.config)."""
        return {"LIFELINE_TLS_CERT": str(self.tls_dir / "server.pem"),
                "LIFELINE_TLS_KEY": str(self.tls_dir / "server.key"),
                "LIFELINE_AUTH_KEYS": str(self.public_key),
                **self.nats_env(service)}

    @property
    def console_token_file(self) -> Path:
        return self.auth_dir / "console-token"

    def console_env(self) -> dict[str, str]:
        """The web console's configuration: its HTTPS certificate, the keys people's tokens
        verify with, and its own viewer token to read the picture with."""
        write_private(self.console_token_file, self.token(
            "console", ("viewer",), ttl=timedelta(days=30)).encode())
        return {"LIFELINE_TLS_CERT": str(self.tls_dir / "server.pem"),
                "LIFELINE_TLS_KEY": str(self.tls_dir / "server.key"),
                "LIFELINE_TLS_CA": str(self.ca_file),
                "LIFELINE_AUTH_KEYS": str(self.public_key),
                "LIFELINE_CONSOLE_TOKEN_FILE": str(self.console_token_file)}

    def nats_env(self, user: str) -> dict[str, str]:
        return {"LIFELINE_NATS_USER": user,
                "LIFELINE_NATS_PASSWORD": self.nats_passwords()[user],
                "LIFELINE_NATS_CA": str(self.ca_file)}

    def nats_login(self, user: str = natsauth.OBSERVER) -> dict[str, str]:
        """Keyword arguments for lifeline.bus.connect as one of the stack's NATS users."""
        return {"user": user, "password": self.nats_passwords()[user],
                "ca_file": str(self.ca_file)}
