"""Choices on the command line: protobuf enums in their CLI spelling, names refused with
the closest known ones, and shell completion."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, cast

import typer


def enum_choice(enum: Any, prefix: str) -> dict[str, int]:
    """CLI spelling of a protobuf enum: GRADE_III -> iii, UNIT_STATUS_EN_ROUTE -> en_route."""
    return {name.removeprefix(prefix).lower(): number for name, number in enum.items()
            if not name.endswith("UNSPECIFIED")}


def choice(names: Iterable[str]) -> Callable[[str], str]:
    """A parser accepting one of names, refusing others with the closest ones."""
    known = sorted(names)

    def parse(value: str) -> str:
        if value in known:
            return value
        close = difflib.get_close_matches(value, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(known)}"
                                 if not close else f"{value!r}: {hint}(one of "
                                 f"{', '.join(known)})")
    return parse


def completer(names: Iterable[str] | Callable[[], Iterable[str]]
              ) -> Callable[[str], list[str]]:
    """Shell completion from a list of names (or a function giving them)."""
    def complete(incomplete: str) -> list[str]:
        try:
            found = names() if callable(names) else names
        except Exception:  # completion never fails the shell: no names, no suggestions
            return []
        return sorted(n for n in found if n.startswith(incomplete))
    return complete


def known_names(stub: Callable[[], Any], kind: int) -> Callable[[str], list[str]]:
    """Shell completion from the names a service knows (ListKnownNames: hazards, unit kinds,
    departments); nothing when it cannot be asked."""
    def names() -> list[str]:
        from lifeline.common.v1 import names_pb2

        request = names_pb2.ListKnownNamesRequest(kind=cast(Any, kind))
        answer = stub().ListKnownNames(request, timeout=3)
        return [name for known in answer.known for name in known.names]
    return completer(names)


NEW_NAMES_HELP = ("take names nobody knows yet (a hazard, unit kind or department new to "
                  "the city); without it a misspelt name is refused with the closest known")


def enum_option(enum: Any, prefix: str, help: str, *decls: str, **more: Any) -> Any:
    """A typer.Option taking an enum's CLI spelling, with completion and the choices in
    its help."""
    names = enum_choice(enum, prefix)
    return typer.Option(*decls, parser=choice(names), autocompletion=completer(names),
                        metavar="|".join(names), help=help, **more)


def enum_argument(enum: Any, prefix: str, help: str, exclude: Iterable[str] = ()) -> Any:
    names = [n for n in enum_choice(enum, prefix) if n not in set(exclude)]
    return typer.Argument(parser=choice(names), autocompletion=completer(names),
                          metavar="|".join(names), help=help)


def enum_value(enum: Any, prefix: str, name: str | None) -> int:
    return enum_choice(enum, prefix)[name] if name else 0


def enum_label(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix) if value else ""
