"""Documents from outside are read with a bound on their nesting: a thousand brackets are a
clear refusal, not a RecursionError, and a document as deep as the limit still reads."""

from __future__ import annotations

import pytest
from lifeline.documents import MAX_DEPTH, TooDeep, load_json, load_toml


@pytest.mark.parametrize("text", [
    "[" * 1000 + "]" * 1000,  # past the parser's own recursion
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),  # parsed, then measured
    '{"a": ' * 100 + "1" + "}" * 100,
])
def test_json_nested_too_deep_is_refused(text: str) -> None:
    with pytest.raises(TooDeep, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_json(text)


@pytest.mark.parametrize("text", [
    "a = " + "[" * 1000 + "]" * 1000,
    "a" + ".a" * 100 + " = 1",
    "a = " + "{b = " * 100 + "1" + "}" * 100,
])
def test_toml_nested_too_deep_is_refused(text: str) -> None:
    with pytest.raises(TooDeep):
        load_toml(text)


def test_a_document_as_deep_as_the_limit_reads() -> None:
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert load_toml("a" + ".a" * (MAX_DEPTH - 2) + " = 1")["a"]
