"""The CLIs teach: every command and every option and argument of the five CLIs says what
it is for, and the options every command shares go before or after the command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from lifeline.cli import choices, session
from lifeline.cli.stack import app as stack_app
from lifeline_dispatch.cli import app as dispatch_app
from lifeline_monitor.cli import app as monitor_app
from lifeline_resources.cli import app as resources_app
from lifeline_review.cli import app as review_app

APPS = {"lifeline": stack_app, "lifeline-monitor": monitor_app,
        "lifeline-dispatch": dispatch_app, "lifeline-resources": resources_app,
        "lifeline-review": review_app}


def commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, f"{path} {name}")


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_command_option_and_argument_has_help(name: str) -> None:
    silent = []
    for path, command in commands(typer.main.get_command(APPS[name]), name):
        if not (command.help or "").strip():
            silent.append(path)
        for param in command.params:
            if param.name in ("help", "install_completion", "show_completion"):
                continue
            if not (getattr(param, "help", None) or "").strip():
                silent.append(f"{path} {param.name}")
    assert silent == []


def test_the_shared_options_go_before_or_after_the_command() -> None:
    assert session.hoist_options(["incidents", "--json", "--addr", "h:1", "--state", "active"]
                                 ) == ["--json", "--addr", "h:1", "incidents", "--state", "active"]
    assert session.hoist_options(["report", "x", "--tz=Asia/Shanghai", "--", "--json"]) == [
        "--tz=Asia/Shanghai", "report", "x", "--", "--json"]


def test_a_misspelt_choice_names_the_closest() -> None:
    with pytest.raises(typer.BadParameter, match="did you mean iii"):
        choices.choice(["i", "ii", "iii", "iv"])("iiii")


def test_close_says_it_is_refused_while_units_are_deployed() -> None:
    close = typer.main.get_command(dispatch_app).commands["close"]  # type: ignore[attr-defined]
    assert "Refused while units are still deployed" in (close.help or "")
    assert "release INCIDENT" in (close.help or "")
