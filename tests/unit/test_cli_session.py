"""A CLI run keeps the options it was given on its own Typer context: they shape that run's
output, and the next run starts without them."""

from __future__ import annotations

import pytest
import typer
from lifeline.cli import render, times
from lifeline.cli.app import run, service_app


def probe() -> typer.Typer:
    app = service_app("probe", "A CLI that says how its run prints.")

    @app.command(help="Say whether this run prints JSON and which zone its times are in.")
    def look() -> None:
        render.emit(f"json={render.wants_json()} zone={times.zone_name()}")

    return app


def test_what_one_run_was_given_is_not_there_for_the_next(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELINE_TIMEZONE", raising=False)
    app = probe()
    run(app, "probe", ["look", "--json", "--tz", "Asia/Shanghai"])
    run(app, "probe", ["look"])
    assert capsys.readouterr().out.splitlines() == ["json=True zone=Asia/Shanghai",
                                                    "json=False zone=UTC"]
