"""What a service runs with, resolved from its environment (`lifeline.settings`, where every
variable is declared and checked) and the rules that hold between variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from lifeline import settings as environment


@dataclass(frozen=True)
class Security:
    """TLS and authentication of a service's gRPC edge, and its NATS identity."""

    tls_cert: str = ""
    tls_key: str = ""
    #: PEM file of token-signing public keys and/or a JWKS URL; neither means auth is off.
    auth_keys: str = ""
    jwks_url: str = ""
    jwks_issuer: str = "lifeline"
    jwks_audience: str = "lifeline"
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
        env = environment.load()
        security = cls(
            tls_cert=env.tls_cert, tls_key=env.tls_key, auth_keys=env.auth_keys,
            jwks_url=env.auth_jwks_url, jwks_issuer=env.auth_jwks_issuer,
            jwks_audience=env.auth_jwks_audience, roles_file=env.roles, reflection=env.reflection,
            health_listen=env.health_listen, nats_user=env.nats_user,
            nats_password=env.nats_password, nats_ca=env.nats_ca)
        # Secure by default: running without TLS or without authentication is a choice
        # someone has to write down.
        if not security.tls_cert and not env.insecure_plaintext:
            raise SystemExit(f"lifeline-{service}: set LIFELINE_TLS_CERT and LIFELINE_TLS_KEY "
                             "(or LIFELINE_INSECURE_PLAINTEXT=true to serve without TLS)")
        if bool(security.tls_cert) != bool(security.tls_key):
            raise SystemExit(f"lifeline-{service}: LIFELINE_TLS_CERT and LIFELINE_TLS_KEY "
                             "go together")
        if not security.auth_on and env.auth != "off":
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
        env = environment.load()
        if not env.nats_url or not env.database_url:
            missing = [name for name, value in (("NATS_URL", env.nats_url),
                                                ("DATABASE_URL", env.database_url)) if not value]
            raise SystemExit(f"lifeline-{service}: set {' and '.join(missing)} "
                             "(or start everything with `lifeline up`)")
        return cls(
            service=service,
            listen=env.listen,
            nats_url=env.nats_url,
            database_url=env.database_url,
            otlp_endpoint=env.otel_exporter_otlp_endpoint,
            stream_replicas=env.stream_replicas,
            security=Security.from_env(service),
            grid_resolution=env.grid_resolution,
            ack_wait=env.ack_wait_seconds,
            configured_names={"hazard": env.hazards, "unit_kind": env.unit_kinds,
                              "department": env.departments},
            nice=DEFAULT_NICE.get(service, 0) if env.nice is None else env.nice,
        )


#: Services off the dispatch path, which yield the CPU to it unless LIFELINE_NICE says.
DEFAULT_NICE = {"review": 10}
