"""The operators' command lines. What the five CLIs share, one job a module: `app` (a CLI
and its run), `session` (a run's options, on Typer's context), `connection` (address, TLS,
identity, retries), `render` (tables and JSON), `times` (the city's zone), `choices` (enums,
names, completion), `errors` (one-line failures), `parked` (the parking commands); `live`
draws streams, `views` incidents and their histories. `stack` is the `lifeline` command (the
local stack and its demo): developer tooling."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """The `lifeline` console script (imported lazily: a service CLI needs only the shared
    modules)."""
    from lifeline.cli.stack import main as stack_main

    stack_main(list(argv) if argv is not None else None)
