"""Every environment variable is declared once (lifeline.settings), checked at start with a
one-line error naming it, and docs/configuration.md is generated from the declarations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifeline import settings
from lifeline.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from no Lifeline variable at all, whatever the shell has set."""
    for name in list(os.environ):
        if name.startswith(("LIFELINE_", "POSTGRES_")) or name in (
                "NATS_URL", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            monkeypatch.delenv(name)
    settings.load.cache_clear()
    yield
    settings.load.cache_clear()


def test_the_committed_configuration_page_is_what_the_settings_generate() -> None:
    assert PAGE.read_text() == settings.markdown(), (
        "docs/configuration.md is stale: run `make docs` and commit it")


def test_the_page_names_every_variable_with_its_default() -> None:
    page = settings.markdown()
    for name, field in settings.Environment.model_fields.items():
        assert f"| `{settings.variable(name, field)}` |" in page
    assert "| `LIFELINE_ACK_WAIT_SECONDS` | number, ≥ 1, ≤ 3600 | `3.0` |" in page


def test_a_non_number_where_a_number_is_expected_is_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELINE_ACK_WAIT_SECONDS", "soon")
    with pytest.raises(settings.SettingsError) as refused:
        settings.load()
    message = str(refused.value)
    assert "\n" not in message
    assert re.search(r": LIFELINE_ACK_WAIT_SECONDS: input should be a valid number.*"
                     r"\(got 'soon'\)$", message), message


def test_every_bad_variable_is_named_on_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELINE_GRID_RESOLUTION", "16")
    monkeypatch.setenv("POSTGRES_POOL_SIZE", "many")
    monkeypatch.setenv("LIFELINE_FIELD_CLOCK", "observd")
    with pytest.raises(settings.SettingsError) as refused:
        settings.load()
    message = str(refused.value)
    assert "\n" not in message
    assert "LIFELINE_GRID_RESOLUTION: input should be less than or equal to 15 (got '16')" \
        in message
    assert "POSTGRES_POOL_SIZE: input should be a valid integer" in message
    assert "LIFELINE_FIELD_CLOCK: input should be 'service' or 'observed' (got 'observd')" \
        in message


def test_values_are_read_as_people_write_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELINE_HAZARDS", " heavy_rain, ,landslide,")
    monkeypatch.setenv("LIFELINE_REFLECTION", "off")
    monkeypatch.setenv("LIFELINE_INSECURE_PLAINTEXT", "yes")
    monkeypatch.setenv("LIFELINE_ACK_WAIT_SECONDS", "")  # empty: unset
    env = settings.load()
    assert env.hazards == ("heavy_rain", "landslide")
    assert env.reflection is False and env.insecure_plaintext is True
    assert env.ack_wait_seconds == 3.0


def test_a_service_takes_its_settings_from_the_one_loader(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
    monkeypatch.setenv("LIFELINE_INSECURE_PLAINTEXT", "true")
    monkeypatch.setenv("LIFELINE_AUTH", "off")
    monkeypatch.setenv("LIFELINE_UNIT_KINDS", "drone")
    review, dispatch = Settings.from_env("review"), Settings.from_env("dispatch")
    assert (review.nice, dispatch.nice) == (10, 0)
    assert dispatch.configured_names["unit_kind"] == ("drone",)
    monkeypatch.setenv("LIFELINE_NICE", "20")
    settings.load.cache_clear()
    with pytest.raises(SystemExit, match="LIFELINE_NICE: input should be less than or equal "
                                         "to 19"):
        Settings.from_env("dispatch")


def test_a_service_with_a_bad_value_stops_at_start_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "NATS_URL": "nats://127.0.0.1:1", "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
           "LIFELINE_INSECURE_PLAINTEXT": "true", "LIFELINE_AUTH": "off",
           "LIFELINE_STREAM_REPLICAS": "three"}
    done = subprocess.run([str(Path(sys.executable).parent / "lifeline-dispatch"), "serve"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "lifeline-dispatch: LIFELINE_STREAM_REPLICAS: input should be a valid integer, "
        "unable to parse string as an integer (got 'three')"]


def test_no_code_reads_the_environment_behind_the_settings_back() -> None:
    readers = re.compile(r"os\.environ\b(?!\})|os\.getenv|getenv\(")
    # devstack hands its children the environment; a terminal's width is not a setting.
    # gRPC's own variable, set before gRPC loads (libs/lifeline/__init__.py says why).
    allowed = {"libs/lifeline/__init__.py": 'os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT"',
               "libs/lifeline/devstack.py": "{**os.environ",
               "libs/lifeline/cli/render.py": 'os.environ.get("COLUMNS")',
               # secrets a city's channels file names by their variable (`password_env`)
               "services/monitor/lifeline_monitor/channels/config.py":
                   "os.environ.get(str(variable)"}
    found = []
    for path in [*ROOT.glob("libs/lifeline/**/*.py"), *ROOT.glob("services/*/lifeline_*/**/*.py")]:
        name = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if readers.search(line) and allowed.get(name, "\0") not in line:
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "read the environment through lifeline.settings:\n" + "\n".join(found)
