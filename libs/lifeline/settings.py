"""Every environment variable Lifeline reads, declared once with its type, default and help.

Services, CLIs and `lifeline` read their configuration only through `load()`, which checks
every variable at once and refuses a bad one in one line naming it. `python -m
lifeline.settings` writes docs/configuration.md from these declarations
(tests/unit/test_settings.py fails when the committed page differs).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICE = "a service"
CLI = "the CLIs"
TOOLS = "`lifeline`, the CLIs"

#: A comma-separated list of names, blanks dropped (not JSON, as pydantic would read a tuple).
Names = Annotated[tuple[str, ...], NoDecode]


def _var(default: Any, used_by: str, help: str, *, env: str | None = None, **checks: Any
         ) -> Any:
    """A setting: its default, who reads it and what it means; `env` when its variable does
    not follow LIFELINE_<NAME>."""
    return Field(default, description=help, validation_alias=env,
                 json_schema_extra={"used_by": used_by}, **checks)


class Environment(BaseSettings):
    """The environment of every Lifeline process (12-factor)."""

    model_config = SettingsConfigDict(env_prefix="LIFELINE_", env_ignore_empty=True,
                                      frozen=True, extra="ignore")

    # ---- servers ----
    nats_url: str | None = _var(
        None, f"{SERVICE}, {TOOLS}, tests", "the NATS server (`nats://host:port`); required by a "
        "service; `lifeline up`, `lifeline demo` and the tests start their own when unset",
        env="NATS_URL")
    database_url: str | None = _var(
        None, f"{SERVICE}, {TOOLS}, tests", "the PostgreSQL database "
        "(`postgresql://user:pass@host:port/db`); required by a service; `lifeline up`, "
        "`lifeline demo` and the tests start their own when unset (the tests create a fresh "
        "database per stack on it)", env="DATABASE_URL")
    otel_exporter_otlp_endpoint: str | None = _var(
        None, SERVICE, "export spans over OTLP/gRPC to this endpoint",
        env="OTEL_EXPORTER_OTLP_ENDPOINT")
    listen: str = _var("127.0.0.1:0", SERVICE, "its gRPC address, e.g. `0.0.0.0:50051`")
    health_listen: str = _var(
        "", SERVICE, "a plaintext port serving health checking only, for probes that cannot "
        "speak TLS; a standby replica answers here (SERVING: ready to take over) and opens "
        "its gRPC port only when it leads")
    stream_replicas: int = _var(
        1, SERVICE, "replicas of its JetStream stream (3 on a cluster, so a lost server loses "
        "no event)", ge=1, le=5)
    ack_wait_seconds: float = _var(
        3.0, SERVICE, "how long JetStream waits before redelivering what one of its consumers "
        "holds unacknowledged (live holders keep theirs with in-progress acks, and a "
        "replacement takes over a dead one's at once)", ge=1, le=3600)
    nice: int | None = _var(
        None, SERVICE, "added to the process's nice value at start; unset: 10 for review, "
        "which only keeps and measures what happened and so yields the cores to the dispatch "
        "path, 0 for the others", ge=0, le=19)

    # ---- the event store (the `eventsourcing` library's settings Lifeline sets) ----
    postgres_pool_size: int = _var(
        5, SERVICE, "connections the event store keeps open", env="POSTGRES_POOL_SIZE", ge=1)
    postgres_max_overflow: int = _var(
        10, SERVICE, "connections the event store may open beyond the pool under load",
        env="POSTGRES_MAX_OVERFLOW", ge=0)
    postgres_lock_timeout: int = _var(
        2, SERVICE, "seconds a writer waits for the events table's lock before it gives up "
        "(0: forever)", env="POSTGRES_LOCK_TIMEOUT", ge=0)
    postgres_connect_timeout: int = _var(
        2, SERVICE, "seconds to wait for PostgreSQL to accept a connection",
        env="POSTGRES_CONNECT_TIMEOUT", ge=1)
    postgres_idle_in_transaction_session_timeout: int = _var(
        5, SERVICE, "seconds PostgreSQL lets a transaction sit idle before it ends the session "
        "(0: forever)", env="POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", ge=0)

    # ---- security ----
    tls_cert: str = _var(
        "", SERVICE, "its TLS certificate chain (PEM); required unless "
        "`LIFELINE_INSECURE_PLAINTEXT=true`")
    tls_key: str = _var("", SERVICE, "its TLS private key (PEM), with `LIFELINE_TLS_CERT`")
    insecure_plaintext: bool = _var(
        False, f"{SERVICE}, {CLI}", "`true` serves / connects without TLS (explicit; loopback "
        "only for clients)")
    auth_keys: str = _var(
        "", SERVICE, "PEM file of the Ed25519 public keys that sign callers' tokens (several "
        "for rotation)")
    auth_jwks_url: str = _var(
        "", f"{SERVICE}, the console", "and/or: the JWKS URL of the city's identity provider, "
        "whose tokens (signed with a `kid`) carry `roles` and, for a department, "
        "`department` claims")
    auth_jwks_issuer: str = _var(
        "lifeline", f"{SERVICE}, the console", "the `iss` the identity provider's tokens "
        "must carry (its issuer URL)")
    auth_jwks_audience: str = _var(
        "lifeline", f"{SERVICE}, the console", "the `aud` they must carry (the console's "
        "client id, when people sign in to the console through the provider)")
    auth: Literal["on", "off"] = _var(
        "on", SERVICE, "`off` accepts every caller as `anonymous` (explicit; for experiments "
        "only); otherwise `LIFELINE_AUTH_KEYS` or `LIFELINE_AUTH_JWKS_URL` is required")
    roles: str = _var(
        "", SERVICE, "another role matrix file (unset: the shipped "
        "`libs/lifeline/identity/roles.toml`)")
    reflection: bool = _var(True, SERVICE, "`off` turns server reflection off (it is on, for "
                            "authenticated callers)")
    nats_user: str = _var("", SERVICE, "its own NATS user")
    nats_password: str = _var("", SERVICE, "its NATS user's password")
    nats_ca: str = _var("", SERVICE, "the CA that NATS' TLS certificate chains to")

    # ---- the city ----
    plans: Path | None = _var(
        None, "dispatch, review", "folder of emergency plans (unset: the shipped `plans/`)")
    coupled_risks: Path | None = _var(
        None, "monitor", "folder of coupled-risk rules (unset: the shipped `coupled_risks/`)")
    grid_resolution: int = _var(
        8, "monitor", "H3 resolution of the grid cells warnings belong to (8: cells of about "
        "0.74 km²)", ge=0, le=15)
    roads: Path | None = _var(
        None, "resources", "the city's road graph (GeoJSON LineStrings); unset: travel time "
        "is estimated from straight-line distance")
    coverage: Path | None = _var(
        None, "resources", "coverage requirements (TOML, e.g. `coverage/xuhui.toml`); unset: "
        "no coverage checks")
    position_stale_seconds: float = _var(
        300.0, "resources", "a unit's reported position older than this is stale: it is "
        "ranked from its station", gt=0, le=86_400)
    hazards: Names = _var(
        (), "monitor, dispatch", "hazards the city adds to those its plans and sensors name "
        "(comma-separated)")
    unit_kinds: Names = _var(
        (), "dispatch, resources", "unit kinds the city adds to those its plans and units name "
        "(comma-separated)")
    departments: Names = _var(
        (), "dispatch, resources", "departments the city adds to those its plans, units and "
        "depots name (comma-separated)")

    # ---- time ----
    field_clock: Literal["service", "observed"] = _var(
        "service", "monitor, dispatch", "`observed`: deadlines, staleness and shelving follow "
        "the latest field time the service was told of (drills, replays, the demo, tests) "
        "instead of the service clock")
    max_clock_skew_seconds: float = _var(
        300.0, SERVICE, "how far ahead of the service's clock a field time a caller gives may "
        "be", ge=0)

    # ---- the CLIs and `lifeline` ----
    state_dir: Path = _var(
        Path(".lifeline"), TOOLS, "where `lifeline up` keeps its data, logs, CA, tokens and "
        "`state.json`")
    monitor_addr: str = _var(
        "", CLI, "monitor's address (else `--addr`, else what `lifeline up` recorded)")
    dispatch_addr: str = _var("", CLI, "dispatch's address (likewise)")
    resources_addr: str = _var("", CLI, "resources' address (likewise)")
    review_addr: str = _var("", CLI, "review's address (likewise)")
    token: str = _var(
        "", CLI, "bearer token (else `--token`, else the one `lifeline up` wrote)")
    tls_ca: str = _var("", CLI, "CA to trust (else `--ca`, else the one `lifeline up` made)")
    timezone: str = _var(
        "", CLI, "the city's time zone (IANA, e.g. `Asia/Shanghai`): field times in tables, "
        "and times typed without a zone (else `--tz`; unset: UTC)")

    # ---- delivery channels (monitor) ----
    channels: str = _var(
        "", "monitor", "the delivery channels file (TOML: each party's webhook, chat, mail and "
        "SMS/voice gateway channels, in order; see docs/channels.md); unset: the inbox only")
    ack_listen: str = _var(
        "127.0.0.1:0", "monitor", "host:port of monitor's acknowledgement endpoint (signed "
        "links, SMS replies); port 0 takes a free one")

    # ---- the console ----
    console_listen: str = _var(
        "127.0.0.1:8443", "the console", "host:port the web console serves HTTPS on")
    console_token_file: Path | None = _var(
        None, "the console", "a file holding the console's own token (role viewer), with which "
        "it watches the services for the picture; people act with their own")
    console_oidc_issuer: str = _var(
        "", "the console", "the issuer URL of an OpenID Connect provider to sign in with "
        "(unset: sign-in by token or link only); set `LIFELINE_AUTH_JWKS_*` to the same "
        "provider, on the services too")
    console_oidc_client_id: str = _var(
        "lifeline-console", "the console", "the console's client id at that provider")
    console_oidc_client_secret_file: Path | None = _var(
        None, "the console", "a file holding the console's client secret there (unset: a "
        "public client, the code flow with PKCE alone)")
    console_tiles: str = _var(
        "", "the console", "a raster tile URL of the city's own tile server "
        "(`https://tiles.example/{z}/{x}/{y}.png`); unset: the city's roads and grid only")
    console_basemap: Names = _var(
        (), "the console", "GeoJSON road and grid TOML files drawn under the picture "
        "(comma-separated; unset: the shipped demo city's)")

    @field_validator("hazards", "unit_kinds", "departments", "console_basemap", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    def address_of(self, service: str) -> str:
        """LIFELINE_<SERVICE>_ADDR."""
        return str(getattr(self, f"{service}_addr", ""))


class SettingsError(SystemExit):
    """A variable with a value its setting refuses. A SystemExit, so a process that meets
    one at start prints this one line and stops, with no traceback."""


def variable(name: str, field: FieldInfo) -> str:
    """The environment variable a setting is read from."""
    alias = field.validation_alias
    return alias if isinstance(alias, str) else f"LIFELINE_{name.upper()}"


@functools.cache
def load() -> Environment:
    """The settings of this process, read from its environment once, every variable checked
    (`load.cache_clear()` reads it again)."""
    try:
        return Environment()
    except ValidationError as error:
        raise SettingsError(f"{_program()}: {describe(error)}") from None


def describe(error: ValidationError) -> str:
    """One line naming each refused variable, what it must be and what it was."""
    names = {}
    for name, field in Environment.model_fields.items():
        names[name] = names[variable(name, field)] = variable(name, field)
    parts = []
    for problem in error.errors():
        key = str(problem["loc"][0]) if problem["loc"] else ""
        got = problem.get("input")
        shown = f" (got {str(got)[:24]!r})" if isinstance(got, str) else ""
        message = problem["msg"]
        parts.append(f"{names.get(key, key)}: {message[0].lower()}{message[1:]}{shown}")
    return "; ".join(parts)


def _program() -> str:
    return Path(sys.argv[0]).name or "lifeline"


def markdown() -> str:
    """docs/configuration.md: every variable with its type, default, readers and meaning."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m lifeline.settings` (`make docs`) from",
        "     libs/lifeline/settings.py: edit the settings there, not this page. -->",
        "",
        "Every Lifeline process is configured by its environment, and only through",
        "`lifeline.settings`: each variable is declared there once. A service checks every",
        "variable when it starts (a CLI, when it first needs one) and refuses a bad value in",
        "one line naming it, e.g.",
        "`lifeline-dispatch: LIFELINE_ACK_WAIT_SECONDS: input should be a valid number, "
        "unable to parse string as a number (got 'soon')`.",
        "An empty variable counts as unset.",
        "",
        "| variable | type | default | used by | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Environment.model_fields.items():
        extra = field.json_schema_extra
        used_by = extra.get("used_by", "") if isinstance(extra, dict) else ""
        lines.append(f"| `{variable(name, field)}` | {_type(field)} | {_default(field)} | "
                     f"{used_by} | {field.description} |")
    lines += [
        "",
        "A service also refuses to start without `NATS_URL` and `DATABASE_URL`, without TLS",
        "(unless `LIFELINE_INSECURE_PLAINTEXT=true`) and without token keys (unless",
        "`LIFELINE_AUTH=off`). Security: [security.md](security.md). Monitor's defaults per",
        "sensor kind are data too:",
        "[`kinds.toml`](../services/monitor/lifeline_monitor/kinds.toml).",
        "",
    ]
    return "\n".join(lines)


def _type(field: FieldInfo) -> str:
    annotation: Any = field.annotation
    if get_origin(annotation) in (Union, UnionType):  # X | None: the X
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        text = " / ".join(f"`{value}`" for value in get_args(annotation))
    elif get_origin(annotation) is tuple:
        text = "names, comma-separated"
    else:
        text = {bool: "`true` / `false`", int: "integer", float: "number", str: "text",
                Path: "path"}[annotation]
    bounds = [f"{symbol} {getattr(m, kind)}" for m in field.metadata
              for kind, symbol in (("gt", ">"), ("ge", "≥"), ("le", "≤")) if hasattr(m, kind)]
    return ", ".join([text, *bounds])


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is None or value == "" or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


if __name__ == "__main__":
    sys.stdout.write(markdown())
