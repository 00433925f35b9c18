"""The connection to a service: its address, TLS, the caller's token, idempotency keys and
retries."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from lifeline.cli.errors import fail
from lifeline.cli.session import current

if TYPE_CHECKING:
    from lifeline.settings import Environment


def environment() -> Environment:
    """The settings of this process (lifeline.settings), every variable checked."""
    from lifeline import settings  # not at import: `--help` and completion stay quick

    return settings.load()


def default_state_dir() -> Path:
    return environment().state_dir


def service_address(service: str, given: str | None) -> str:
    """--addr, else LIFELINE_<SERVICE>_ADDR, else what `lifeline up` recorded."""
    if given:
        return given
    env = environment().address_of(service)
    if env:
        return env
    state_file = default_state_dir() / "state.json"
    try:
        state = json.loads(state_file.read_text())
        return str(state["services"][service]["address"])
    except (OSError, KeyError, ValueError):
        fail(f"no address; pass --addr HOST:PORT, set LIFELINE_{service.upper()}_ADDR, or "
             "run `lifeline up`")


class IdempotencyKey(grpc.UnaryUnaryClientInterceptor):
    """Sends a fresh idempotency key with every call; gRPC's own retries resend it, so a
    command retried after a dropped connection happens once."""

    def __init__(self) -> None:
        from lifeline import idempotency  # not at import: `--help` and completion stay quick

        self.header = idempotency.HEADER

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), (self.header, str(uuid.uuid4()))]
        return continuation(details._replace(metadata=metadata), request)


#: Retry calls that never reached a service (UNAVAILABLE): safe, the key makes it once.
RETRY_CONFIG = json.dumps({"methodConfig": [{
    "name": [{}],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def credentials(token: str | None, ca_file: str | None) -> grpc.ChannelCredentials:
    """--token, else LIFELINE_TOKEN, else the token `lifeline up` wrote; --ca, else
    LIFELINE_TLS_CA, else the CA `lifeline up` made; plaintext (loopback only) when
    LIFELINE_INSECURE_PLAINTEXT is set."""
    from lifeline.grpcutil import client_credentials

    env = environment()
    state = env.state_dir
    token = token or env.token or _read(state / "auth" / "token")
    ca_file = ca_file or env.tls_ca
    try:
        ca = Path(ca_file).read_bytes() if ca_file else _read_bytes(state / "tls" / "ca.pem")
    except OSError as error:
        fail(f"cannot read the CA certificate {ca_file}: {error.strerror}")
    if ca is None and not env.insecure_plaintext:
        fail("no CA certificate to trust: pass --ca FILE, set LIFELINE_TLS_CA, run "
             "`lifeline up`, or set LIFELINE_INSECURE_PLAINTEXT=true")
    return client_credentials(ca, token or None)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read(path: Path) -> str | None:
    data = _read_bytes(path)
    return data.decode().strip() if data else None


def connect(service: str) -> grpc.Channel:
    """The channel to a service, opened on first use in a run and closed when the run ends."""
    session = current()
    if session.channel is None:
        session.address = service_address(service, session.options.addr)
        session.raw = grpc.secure_channel(
            session.address, credentials(session.options.token, session.options.ca),
            options=[("grpc.service_config", RETRY_CONFIG)])
        session.channel = grpc.intercept_channel(session.raw, IdempotencyKey())
    return session.channel
