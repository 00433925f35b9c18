"""Documents from outside (a proposed plan's TOML, an exported history's JSON lines) read
with a bound on their nesting: the parsers recurse, so a few kilobytes of brackets would
otherwise end in a RecursionError instead of an answer naming the problem, and what reads
the document next (schema validation, copies) recurses too."""

from __future__ import annotations

import json
import tomllib
from typing import Any

#: Deeper than any document Lifeline reads (a plan nests five levels).
MAX_DEPTH = 32


class TooDeep(ValueError):
    """The document nests arrays or tables deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")


def load_toml(text: str, limit: int = MAX_DEPTH) -> dict[str, Any]:
    """tomllib.loads, refusing a document nested deeper than limit (TooDeep)."""
    try:
        document = tomllib.loads(text)
    except RecursionError:
        raise TooDeep(limit) from None
    check_depth(document, limit)
    return document


def load_json(text: str, limit: int = MAX_DEPTH) -> Any:
    """json.loads, refusing a document nested deeper than limit (TooDeep)."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise TooDeep(limit) from None
    check_depth(document, limit)
    return document


def check_depth(document: Any, limit: int = MAX_DEPTH) -> None:
    """TooDeep if lists and dicts nest deeper than limit (counted without recursing)."""
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth >= limit:
            raise TooDeep(limit)
        pending.extend((child, depth + 1) for child in children)
