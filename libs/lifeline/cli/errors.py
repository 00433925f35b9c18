"""How a CLI's failure reads: one line on stderr, and the exit status docs/cli.md documents."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import grpc

#: Exit codes, as docs/cli.md documents them.
EXIT_FAILED = 1  # the service refused or could not be reached; a file was wrong
EXIT_USAGE = 2  # the command line was wrong (Click's convention)
EXIT_PIPE_CLOSED = 1  # the reader went away (`| head`): quietly, as Typer does


class Failure(Exception):
    """A failure the operator can act on: printed as one line, exit 1."""


def fail(message: str) -> NoReturn:
    raise Failure(message)


def pipe_closed() -> int:
    """The reader of our output went away: stop without a traceback (Python's advice: point
    stdout at devnull so the interpreter's last flush does not fail too)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def say_error(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def note(line: str) -> None:
    """Something about the output (it stopped at --limit ...) for the person, not the
    script: stderr."""
    print(line, file=sys.stderr, flush=True)


def rpc_error(error: grpc.RpcError, service: str, address: str | None) -> str:
    code = error.code()
    detail = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        detail = f"cannot reach lifeline-{service} at {address} ({detail})"
    return f"{code.name.lower()}: {one_line(detail)}"
