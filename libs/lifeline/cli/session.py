"""What one run of a CLI holds on Typer's context: the shared options given and the channel
it opened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

# Typer vendors Click; its context is where a run's state lives.
from typer._click.globals import get_current_context


@dataclass
class Options:
    """The options every service CLI takes, before or after the command."""

    addr: str | None = None
    token: str | None = None
    ca: str | None = None
    json: bool = False
    ndjson: bool = False
    tz: str | None = None


@dataclass
class Session:
    """One run of a CLI: its options, and the channel to its service once opened."""

    options: Options = field(default_factory=Options)
    address: str | None = None
    channel: grpc.Channel | None = None
    #: The channel without the interceptors, which is what closes.
    raw: grpc.Channel | None = None

    def close(self) -> None:
        raw, self.raw, self.channel = self.raw, None, None
        if raw is not None:
            raw.close()


def current() -> Session:
    """This run's session (`ctx.obj`); outside a command (completion, a test calling a
    helper) a fresh one with the defaults."""
    ctx: Any = get_current_context(silent=True)
    found = ctx.find_object(Session) if ctx is not None else None
    return found if isinstance(found, Session) else Session()


def options() -> Options:
    return current().options


_FLAGS = {"--json", "--ndjson"}
_VALUED = {"--addr", "--token", "--ca", "--tz"}


def hoist_options(args: Sequence[str]) -> list[str]:
    """`lifeline-dispatch incidents --json` works as well as `--json incidents`: the
    options every command shares move in front of the command."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _FLAGS or (arg.split("=", 1)[0] in _VALUED and "=" in arg):
            front.append(arg)
        elif arg in _VALUED:
            front.extend(args[i:i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest
