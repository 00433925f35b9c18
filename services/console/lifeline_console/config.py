"""What the console is configured with: where the services are, whom it trusts, where it
listens. Read from the environment once, at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("monitor", "dispatch", "resources", "review")


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFELINE_", extra="ignore")

    console_listen: str = Field("127.0.0.1:8443", description="host:port the console serves on")
    monitor_addr: str = Field("127.0.0.1:50051", description="monitor's gRPC address")
    dispatch_addr: str = Field("127.0.0.1:50052", description="dispatch's gRPC address")
    resources_addr: str = Field("127.0.0.1:50053", description="resources' gRPC address")
    review_addr: str = Field("127.0.0.1:50054", description="review's gRPC address")
    tls_ca: Path | None = Field(None, description="CA the services' certificates chain to")
    tls_cert: Path | None = Field(None, description="the console's HTTPS certificate (PEM)")
    tls_key: Path | None = Field(None, description="its private key (PEM)")
    auth_keys: Path | None = Field(
        None, description="public keys that sign people's tokens (the services' own)")
    console_token_file: Path | None = Field(
        None, description="the console's own token (role viewer), to read the picture")
    console_tiles: str = Field(
        "", description="a raster tile URL of the city's own tile server ({z}/{x}/{y}); "
        "empty: the city's roads and grid only")
    console_basemap: list[Path] = Field(
        default_factory=list, description="GeoJSON roads and grid TOML files drawn as the "
        "base map (default: the shipped demo city's)")

    def address(self, service: str) -> str:
        value: str = getattr(self, f"{service}_addr")
        return value

    def token(self) -> str:
        return self.console_token_file.read_text().strip() if self.console_token_file else ""
