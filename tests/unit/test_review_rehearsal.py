"""Sandbox rehearsal: recorded demand played again against a changed unit layout moves the
response time the way the change should, and the same rehearsal twice gives the same
answer, to the microsecond."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import h3
import pytest
from google.protobuf import json_format
from lifeline_review import chain
from lifeline_review.cli import main
from lifeline_review.demand import DemandSpec, generate, grid_cells

STATION = grid_cells(30)[-1]  # the edge of the grid, far from the hot spots


def fleet_file(path: Path, ambulance_one_at: str = STATION) -> Path:
    lines = []
    for kind in ("ambulance", "police_car"):
        for number in range(1, 5):
            cell = ambulance_one_at if (kind, number) == ("ambulance", 1) else STATION
            lat, lon = h3.cell_to_latlng(cell)
            lines.append(f'[[units]]\nid = "{kind}-{number}"\nkind = "{kind}"\n'
                         f"lat = {lat}\nlon = {lon}\n")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """Sixty traffic accidents of a day, most in three neighbouring cells, exported."""
    folder = tmp_path / "histories"
    folder.mkdir()
    spec = DemandSpec(incidents=60, seed=4, hazards=(("traffic_accident", 1.0),),
                      hot_share=0.8)
    for number, history in enumerate(generate(spec)):
        (folder / f"{number:03d}.ndjson").write_text("".join(
            json_format.MessageToJson(e, indent=None) + "\n" for e in chain.chained(history)))
    return folder


def rehearse(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    main(["rehearse", *args, "--json"])
    result: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return result


def p90(outcome: dict[str, Any]) -> float:
    phase = next(p for p in outcome["evaluation"]["phases"] if p["phase"] == "response_time")
    return float(phase["p90"].removesuffix("s"))


def test_an_ambulance_moved_to_the_hot_spot_shortens_the_p90_response(
        recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = Counter(json.loads(f.read_text().splitlines()[0])["opened"]["gridCell"]
                    for f in recorded.glob("*.ndjson"))
    hottest = cells.most_common(1)[0][0]
    base = fleet_file(tmp_path / "fleet.toml")
    moved = fleet_file(tmp_path / "moved.toml", ambulance_one_at=hottest)

    args = ("--histories", str(recorded), "--units", str(base), "--variant", f"units={moved}")
    first = rehearse(capsys, *args)
    again = rehearse(capsys, *args)

    assert [o["variant"] for o in first] == ["baseline", "variant 1"]
    assert first[0]["evaluation"]["incidents"] == first[1]["evaluation"]["incidents"] == 60
    assert p90(first[1]) < p90(first[0])
    assert again == first


def test_the_same_plans_and_units_change_nothing(
        recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = fleet_file(tmp_path / "fleet.toml")
    same = rehearse(capsys, "--histories", str(recorded), "--units", str(base),
                    "--variant", f"units={base}")
    assert same[0]["evaluation"] == same[1]["evaluation"]


def test_generated_demand_from_a_spec_file_reads_as_a_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "day.toml"
    spec.write_text("incidents = 40\nseed = 9\nfleet = 6\n[hazards]\nurban_flooding = 2\n"
                    "gas_leak = 1\n")
    fleet = tmp_path / "fleet.toml"
    main(["rehearse", "--generate", str(spec), "--write-fleet", str(fleet)])
    shown = capsys.readouterr().out
    assert "BASELINE" in shown and "response time p90" in shown and "coverage" in shown
    assert fleet.read_text().count("[[units]]") == 6 * 10


def test_a_bad_variant_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "day.toml"
    spec.write_text("incidents = 5\n")
    with pytest.raises(SystemExit, match="1"):
        main(["rehearse", "--generate", str(spec), "--variant", "ambulances=3"])
    assert "expected units=FILE and/or plans=DIR" in capsys.readouterr().err
    spec.write_text("incidnets = 5\n")
    with pytest.raises(SystemExit, match="1"):
        main(["rehearse", "--generate", str(spec)])
    assert "unknown keys" in capsys.readouterr().err
