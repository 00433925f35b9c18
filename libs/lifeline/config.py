"""The one config loader: every setting comes from the environment (12-factor)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Security:
    """TLS and authentication of a service's gRPC edge, and its NATS identity."""

    tls_cert: str = ""
    tls_key: str = ""
    #: PEM file of token-signing public keys, or a JWKS URL; neither means auth is off.
    auth_keys: str = ""
    jwks_url: str = ""
    roles_file: str = ""
    reflection: bool = True
    #: A plaintext port serving health checking only, for probes that cannot do TLS.
    health_listen: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_ca: str = ""

    @property
    def auth_on(self) -> bool:
        return bool(self.auth_keys or self.jwks_url)

    @classmethod
    def from_env(cls, service: str) -> Security:
        env = os.environ.get
        security = cls(
            tls_cert=env("LIFELINE_TLS_CERT", ""), tls_key=env("LIFELINE_TLS_KEY", ""),
            auth_keys=env("LIFELINE_AUTH_KEYS", ""), jwks_url=env("LIFELINE_AUTH_JWKS_URL", ""),
            roles_file=env("LIFELINE_ROLES", ""),
            reflection=env("LIFELINE_REFLECTION", "on").lower() != "off",
            health_listen=env("LIFELINE_HEALTH_LISTEN", ""),
            nats_user=env("LIFELINE_NATS_USER", ""),
            nats_password=env("LIFELINE_NATS_PASSWORD", ""),
            nats_ca=env("LIFELINE_NATS_CA", ""))
        # Secure by default: running without TLS or without authentication is a choice
        # someone has to write down.
        if not security.tls_cert and not _flag("LIFELINE_INSECURE_PLAINTEXT"):
            raise SystemExit(f"lifeline-{service}: set LIFELINE_TLS_CERT and LIFELINE_TLS_KEY "
                             "(or LIFELINE_INSECURE_PLAINTEXT=true to serve without TLS)")
        if bool(security.tls_cert) != bool(security.tls_key):
            raise SystemExit(f"lifeline-{service}: LIFELINE_TLS_CERT and LIFELINE_TLS_KEY "
                             "go together")
        if not security.auth_on and os.environ.get("LIFELINE_AUTH", "").lower() != "off":
            raise SystemExit(f"lifeline-{service}: set LIFELINE_AUTH_KEYS (a PEM file of "
                             "token-signing public keys) or LIFELINE_AUTH_JWKS_URL "
                             "(or LIFELINE_AUTH=off to accept every caller)")
        return security


@dataclass(frozen=True)
class Settings:
    service: str
    listen: str
    nats_url: str
    database_url: str
    otlp_endpoint: str | None
    stream_replicas: int
    security: Security = Security()
    #: H3 resolution of monitor's grid cells (8: about 0.74 km², cells about 1 km across).
    grid_resolution: int = 8
    #: JetStream redelivers what a consumer holds unacknowledged after this long.
    ack_wait: float = 3.0
    #: Names the city adds to those its plans and registries know (lifeline.names), by
    #: kind: "hazard", "unit_kind", "department".
    configured_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Added to the process's nice value at start. Review only keeps and measures what
    #: happened, so on a shared machine it yields the cores to the dispatch path
    #: (monitor -> dispatch -> resources -> dispatch) and catches up right after.
    nice: int = 0

    @classmethod
    def from_env(cls, service: str) -> Settings:
        missing = [name for name in ("NATS_URL", "DATABASE_URL") if not os.environ.get(name)]
        if missing:
            raise SystemExit(f"lifeline-{service}: set {' and '.join(missing)} "
                             "(or start everything with `lifeline up`)")
        return cls(
            service=service,
            listen=os.environ.get("LIFELINE_LISTEN", "127.0.0.1:0"),
            nats_url=os.environ["NATS_URL"],
            database_url=os.environ["DATABASE_URL"],
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            # 3 on a clustered JetStream in production, so a lost server loses no event.
            stream_replicas=int(os.environ.get("LIFELINE_STREAM_REPLICAS", "1")),
            security=Security.from_env(service),
            grid_resolution=_grid_resolution(service),
            ack_wait=_seconds(service, "LIFELINE_ACK_WAIT_SECONDS", 3.0, 1.0, 3600.0),
            configured_names={kind: _names(variable) for kind, variable in (
                ("hazard", "LIFELINE_HAZARDS"), ("unit_kind", "LIFELINE_UNIT_KINDS"),
                ("department", "LIFELINE_DEPARTMENTS"))},
            nice=_nice(service),
        )


def _names(variable: str) -> tuple[str, ...]:
    """A comma-separated list of names (blanks dropped)."""
    return tuple(n.strip() for n in os.environ.get(variable, "").split(",") if n.strip())


def _seconds(service: str, name: str, default: float, low: float, high: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        seconds = float(value) if value else default
    except ValueError:
        seconds = -1.0
    if not low <= seconds <= high:
        raise SystemExit(f"lifeline-{service}: {name} must be a number of seconds from "
                         f"{low:g} to {high:g} (got {value[:16]!r})")
    return seconds


#: Services off the dispatch path, which yield the CPU to it unless LIFELINE_NICE says.
DEFAULT_NICE = {"review": 10}


def _nice(service: str) -> int:
    value = os.environ.get("LIFELINE_NICE", "").strip()
    if not value:
        return DEFAULT_NICE.get(service, 0)
    if not value.isdigit() or int(value) > 19:
        raise SystemExit(f"lifeline-{service}: LIFELINE_NICE must be 0 to 19 "
                         f"(got {value[:16]!r})")
    return int(value)


def _grid_resolution(service: str) -> int:
    value = os.environ.get("LIFELINE_GRID_RESOLUTION", "8").strip()
    if not value.isdigit() or not 0 <= int(value) <= 15:
        raise SystemExit(f"lifeline-{service}: LIFELINE_GRID_RESOLUTION must be an H3 "
                         f"resolution, 0 to 15 (got {value[:16]!r})")
    return int(value)
