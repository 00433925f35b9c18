"""The one config loader: every setting comes from the environment (12-factor)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    service: str
    listen: str
    nats_url: str
    database_url: str
    otlp_endpoint: str | None
    stream_replicas: int

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
        )
