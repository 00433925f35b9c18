"""Tamper-evident histories: an exported history carries a hash chain, and editing one
character of it makes `history verify` and the import check name the event edited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from lifeline.errors import InvalidArgument
from lifeline.events import meta_of
from lifeline.incident.v1.incident_pb2 import IncidentEvent
from lifeline_review import chain
from lifeline_review.cli import main
from lifeline_review.demand import DemandSpec, generate
from lifeline_review.domain import validate_history


def exported(tmp_path: Path) -> tuple[Path, list[str]]:
    history = chain.chained(generate(DemandSpec(incidents=3, seed=7))[1])
    lines = [json_format.MessageToJson(e, indent=None) for e in history]
    path = tmp_path / "incident.ndjson"
    path.write_text("".join(line + "\n" for line in lines))
    return path, lines


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    try:
        main(["history", "verify", str(path)])
    except SystemExit as stop:
        assert stop.code == 1  # refused: one line on stderr
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_an_untouched_export_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    path, lines = exported(tmp_path)
    out = verify(path, capsys)
    assert f"{len(lines)} events" in out and "chain holds" in out
    assert json.loads(lines[-1])["chainDigest"] in out


@pytest.mark.parametrize("line", [0, 5, -1])
def test_editing_one_character_names_the_event(tmp_path: Path, line: int,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path, lines = exported(tmp_path)
    index = line % len(lines)
    # One character of the actor's name, inside the event's JSON.
    at = lines[index].index('"actor": "') + len('"actor": "')
    original = lines[index]
    lines[index] = original[:at] + ("Z" if original[at] != "Z" else "Y") + original[at + 1:]
    path.write_text("".join(line + "\n" for line in lines))
    sequence = json_format.Parse(original, IncidentEvent())
    sequence = meta_of(sequence).sequence

    out = verify(path, capsys)
    assert f"incident.ndjson:{index + 1}: event {sequence} does not match" in out

    events = [json_format.Parse(text, IncidentEvent()) for text in lines]
    with pytest.raises(InvalidArgument) as refused:
        validate_history(events)
    assert refused.value.field == f"events[{index}].chain_digest"
    assert f"event {sequence} does not match" in str(refused.value)


def test_a_line_made_unreadable_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    path, lines = exported(tmp_path)
    lines[3] = lines[3].replace("{", "[", 1)
    path.write_text("".join(line + "\n" for line in lines))
    assert "incident.ndjson:4: not an incident event (after event 3)" in verify(path, capsys)


def test_a_history_without_a_chain_imports_but_does_not_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = generate(DemandSpec(incidents=2, seed=7))[0]
    assert validate_history(history) == history
    path = tmp_path / "old.ndjson"
    path.write_text("".join(json_format.MessageToJson(e, indent=None) + "\n" for e in history))
    assert "carries no hash chain" in verify(path, capsys)


def test_the_chain_is_the_same_for_binary_and_json() -> None:
    history = generate(DemandSpec(incidents=2, seed=3))[1]
    again = [json_format.Parse(json_format.MessageToJson(e), IncidentEvent())
             for e in history]
    assert chain.digests(again) == chain.digests(history)
    assert chain.first_break(chain.chained(again)) is None


def test_a_newer_writers_unknown_field_does_not_break_the_chain_through_json() -> None:
    history = generate(DemandSpec(incidents=2, seed=3))[1]
    newer = []
    for event in history:
        copy = IncidentEvent()
        # Field 999 of the wrapper, a varint: what a newer schema might add.
        copy.ParseFromString(event.SerializeToString() + b"\xb8\x3e\x01")
        newer.append(copy)
    assert newer[0].SerializeToString() != history[0].SerializeToString()
    through_json = [json_format.Parse(json_format.MessageToJson(e), IncidentEvent())
                    for e in chain.chained(newer)]
    assert chain.first_break(through_json) is None
    assert chain.digests(newer) == chain.digests(history)
