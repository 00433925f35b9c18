"""The operators' command lines: `kit` is what the five CLIs share (connection, identity,
output, errors, time); `stack` is the `lifeline` command (the local stack and its demo);
`views` draws incidents and their histories for people."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """The `lifeline` console script (imported lazily: a service CLI needs only the kit)."""
    from lifeline.cli.stack import main as stack_main

    stack_main(list(argv) if argv is not None else None)
