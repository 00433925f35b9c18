"""Emergency plans as data: the shipped plans load and make sense, and a broken plan file is
refused with one line naming the file, the field and the problem."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.plans import (
    GRADES,
    PLANS_DIR,
    Plan,
    PlanError,
    PlanLibrary,
    default_library,
    load_plan,
)

SHIPPED = sorted(PLANS_DIR.glob("*.toml"))
EXPECTED_PLANS = {"urban_flooding", "high_rise_fire", "gas_leak", "chemical_spill",
                  "traffic_accident", "infectious_disease"}
UNIT_KINDS = {"fire_engine", "ladder_truck", "ambulance", "police_car", "rescue_team",
              "pump_truck", "hazmat_unit", "gas_repair_crew", "medical_team",
              "epidemiology_team"}
#: Most severe first.
SEVERITY = [pb.GRADE_I, pb.GRADE_II, pb.GRADE_III, pb.GRADE_IV]


# ---- the shipped plans ----


def test_every_expected_plan_is_shipped() -> None:
    assert {p.stem for p in SHIPPED} == EXPECTED_PLANS


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_plan_loads_with_all_four_grades(path: Path) -> None:
    plan = load_plan(path)
    assert plan.id == path.stem and plan.path == path
    assert plan.version >= 1 and plan.title
    assert plan.category in (pb.CATEGORY_NATURAL_DISASTER, pb.CATEGORY_ACCIDENT_DISASTER,
                             pb.CATEGORY_PUBLIC_HEALTH, pb.CATEGORY_SOCIAL_SAFETY)
    assert plan.hazard_types
    assert sorted(plan.grades) == sorted(SEVERITY)
    for grade in SEVERITY:
        spec = plan.for_grade(grade)
        assert spec.grade == grade
        assert 2 <= len(spec.orders) <= 6
        assert {kind for kind, _ in spec.units} <= UNIT_KINDS
        assert {o.department for o in spec.orders} <= set(spec.notify)
        assert all(0 < o.ack_minutes < o.complete_minutes for o in spec.orders)
        assert all(o.tier in ("city", "district", "community") for o in spec.orders)
        assert all(o.unit_kind in {k for k, _ in spec.units} for o in spec.orders
                   if o.unit_kind)
        # Lives are at stake from grade III up: someone is ordered to protect them.
        if grade != pb.GRADE_IV:
            assert any(o.life_safety for o in spec.orders)
    assert 1 <= sum(n for _, n in plan.for_grade(pb.GRADE_IV).units) <= 3
    assert sum(n for _, n in plan.for_grade(pb.GRADE_I).units) >= 10


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_more_severe_grades_need_at_least_as_much(path: Path) -> None:
    plan = load_plan(path)
    for severe, milder in itertools.pairwise(SEVERITY):
        hi, lo = plan.for_grade(severe), plan.for_grade(milder)
        assert hi.response_time_target_minutes <= lo.response_time_target_minutes
        units = dict(hi.units)
        assert all(units.get(kind, 0) >= n for kind, n in lo.units), (severe, milder)
        materials = {m.name: m.quantity for m in hi.materials}
        assert all(materials.get(m.name, 0) >= m.quantity for m in lo.materials)
        # Escalation adds orders and never forgets one (an order keeps its id at every grade).
        assert {o.id for o in lo.orders} <= {o.id for o in hi.orders}
    assert sum(n for _, n in plan.for_grade(pb.GRADE_I).units) > sum(
        n for _, n in plan.for_grade(pb.GRADE_IV).units)


def test_content_hashes_are_the_file_bytes_stable_and_distinct(tmp_path: Path) -> None:
    plans = [load_plan(p) for p in SHIPPED]
    assert len({p.content_hash for p in plans}) == len(plans)
    for plan in plans:
        assert plan.content_hash == hashlib.sha256(plan.path.read_bytes()).hexdigest()
        assert load_plan(plan.path).content_hash == plan.content_hash
    # A comment changes the text a replay must assume, so it changes the hash.
    original = PLANS_DIR / "gas_leak.toml"
    edited = tmp_path / "gas_leak.toml"
    edited.write_bytes(original.read_bytes() + b"# reviewed 2026-03\n")
    again = load_plan(edited)
    assert again.content_hash != load_plan(original).content_hash
    assert again.grades == load_plan(original).grades


def test_library_maps_every_hazard_type_to_its_plan() -> None:
    library = default_library()
    assert default_library() is library
    assert {p.id for p in library.plans} == EXPECTED_PLANS
    covered: list[str] = []
    for plan in library.plans:
        assert library.get(plan.id) is plan
        for hazard in plan.hazard_types:
            assert library.plan_for(hazard) is plan
            covered.append(hazard)
    assert library.hazard_types() == sorted(covered)
    assert set(EXPECTED_PLANS) <= set(library.hazard_types())
    assert library.plan_for("volcano") is None and library.get("volcano") is None


def test_grade_spec_gives_unit_requirements_and_refuses_unknown_grades() -> None:
    plan = default_library().plan_for("urban_flooding")
    assert plan is not None
    assert plan.category == pb.CATEGORY_NATURAL_DISASTER
    # The demo scenario (scenarios/underpass_flood.toml) counts on exactly these at III.
    assert [(r.unit_kind, r.count) for r in plan.for_grade(pb.GRADE_III).requirements()] == [
        ("rescue_team", 1), ("pump_truck", 1), ("ambulance", 1), ("police_car", 1)]
    for bad in (pb.GRADE_UNSPECIFIED, 9):
        with pytest.raises(ValueError, match="grade"):
            plan.for_grade(bad)


def test_high_rise_fire_escalation_from_iii_to_ii_adds_units_and_orders() -> None:
    plan = default_library().plan_for("high_rise_fire")
    assert plan is not None
    iii, ii = plan.for_grade(pb.GRADE_III), plan.for_grade(pb.GRADE_II)
    assert iii.count("fire_engine") < ii.count("fire_engine")
    assert {o.id for o in ii.orders} - {o.id for o in iii.orders}


# ---- broken plan files ----


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


def dump(doc: dict[str, Any]) -> str:
    """A plan document as TOML: top-level keys, then one [grades.X] table per grade."""
    lines = [f"{k} = {_toml(v)}" for k, v in doc.items() if k != "grades"]
    if "grades" in doc:
        if not isinstance(doc["grades"], dict):
            lines.append(f"grades = {_toml(doc['grades'])}")
        else:
            for name, grade in doc["grades"].items():
                lines += ["", f"[grades.{name}]"]
                lines += [f"{k} = {_toml(v)}" for k, v in grade.items()]
    return "\n".join(lines) + "\n"


def grade(engines: int, target: int, foam: int) -> dict[str, Any]:
    return {
        "response_time_target_minutes": target,
        "notify": ["fire", "police"],
        "units": [{"kind": "fire_engine", "count": engines},
                  {"kind": "police_car", "count": 1}],
        "materials": [{"name": "foam", "quantity": foam, "unit": "litre"}],
        "orders": [
            {"id": "fight-fire", "department": "fire", "tier": "district",
             "instruction": "Put the fire out", "life_safety": True, "ack_minutes": 3,
             "complete_minutes": 45, "unit_kind": "fire_engine"},
            {"id": "cordon", "department": "police", "tier": "community",
             "instruction": "Keep people back", "life_safety": False, "ack_minutes": 5,
             "complete_minutes": 20},
        ],
    }


def valid(stem: str = "warehouse_fire", hazards: tuple[str, ...] = ("warehouse_fire",)
          ) -> dict[str, Any]:
    return {
        "id": stem, "version": 1, "title": "Warehouse fire", "category": "accident_disaster",
        "hazard_types": list(hazards),
        "grades": {"IV": grade(1, 15, 100), "III": grade(2, 12, 300),
                   "II": grade(4, 10, 800), "I": grade(8, 8, 2000)},
    }


def write(tmp_path: Path, doc: dict[str, Any], stem: str = "warehouse_fire") -> Path:
    path = tmp_path / f"{stem}.toml"
    path.write_text(dump(doc), encoding="utf-8")
    return path


def refused(path: Path) -> PlanError:
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    error = caught.value
    assert error.file == str(path)
    assert str(error) == f"{path}: {error.field}: {error.problem}"
    assert "\n" not in str(error)
    return error


def test_the_valid_test_plan_loads(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, valid()))
    assert isinstance(plan, Plan) and plan.for_grade(pb.GRADE_II).count("fire_engine") == 4
    assert plan.for_grade(pb.GRADE_IV).orders[1].unit_kind == ""
    assert set(plan.grades) == set(GRADES.values())


Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for step in parents:
            node = node[int(step)] if step.isdigit() else node[step]
        node[int(last) if last.isdigit() else last] = value
    return edit


def _delete(path: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for step in parents:
            node = node[int(step)] if step.isdigit() else node[step]
        del node[last]
    return edit


def _rename(path: str, new: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for step in parents:
            node = node[int(step)] if step.isdigit() else node[step]
        node[new] = node.pop(last)
    return edit


ORDER = "grades.III.orders.1"

BROKEN: list[tuple[str, Edit, str, str]] = [
    # missing fields
    ("missing-title", _delete("title"), "title", "is required"),
    ("missing-instruction", _delete("grades.II.orders.0.instruction"),
     "grades.II.orders[0].instruction", "is required"),
    ("missing-grade", _delete("grades.II"), "grades.II",
     "is required (a plan covers all four grades I, II, III and IV)"),
    # wrong types and values
    ("ack-is-text", _set(f"{ORDER}.ack_minutes", "five"), "grades.III.orders[1].ack_minutes",
     "must be an integer greater than 0, got 'five'"),
    ("ack-is-zero", _set(f"{ORDER}.ack_minutes", 0), "grades.III.orders[1].ack_minutes",
     "must be an integer greater than 0, got 0"),
    ("version-is-float", _set("version", 1.0), "version",
     "must be an integer of at least 1, got 1.0"),
    ("count-is-zero", _set("grades.IV.units.0.count", 0), "grades.IV.units[0].count",
     "must be an integer of at least 1, got 0"),
    ("life-safety-is-text", _set(f"{ORDER}.life_safety", "yes"),
     "grades.III.orders[1].life_safety", "must be true or false, got 'yes'"),
    ("unknown-tier", _set(f"{ORDER}.tier", "county"), "grades.III.orders[1].tier",
     "must be one of city, district, community, got 'county'"),
    ("unknown-category", _set("category", "flood"), "category",
     "must be one of natural_disaster, accident_disaster, public_health, social_safety"),
    ("bad-order-id", _set(f"{ORDER}.id", "Cordon Off"), "grades.III.orders[1].id",
     "lower-case letters, digits and '-'"),
    ("no-hazard-types", _set("hazard_types", []), "hazard_types", "must not be empty"),
    ("notify-twice", _set("grades.I.notify", ["fire", "police", "fire"]),
     "grades.I.notify[2]", "'fire' is listed twice"),
    ("grades-not-a-table", _set("grades", ["I"]), "grades", "must be a table, got an array"),
    # unknown fields
    ("misspelt-field", _rename(f"{ORDER}.ack_minutes", "ack_minute"),
     "grades.III.orders[1].ack_minute", "unknown field 'ack_minute' (did you mean 'ack_minutes'?)"),
    ("unknown-top-level", _set("owner", "fire bureau"), "owner", "unknown field 'owner'"),
    ("unknown-grade", _set("grades.V", grade(1, 20, 50)), "grades.V", "unknown field 'V'"),
    # rules across fields
    ("ack-equals-complete", _set(f"{ORDER}.ack_minutes", 20),
     "grades.III.orders[1].complete_minutes", "must be greater than ack_minutes (20), got 20"),
    ("ack-after-complete", _set(f"{ORDER}.complete_minutes", 2),
     "grades.III.orders[1].complete_minutes", "must be greater than ack_minutes (5), got 2"),
    ("department-not-notified", _set(f"{ORDER}.department", "medical"),
     "grades.III.orders[1].department", "'medical' is not notified at grade III"),
    ("order-for-unit-not-sent", _set(f"{ORDER}.unit_kind", "ladder_truck"),
     "grades.III.orders[1].unit_kind", "'ladder_truck' is not among the units grade III"),
    ("order-id-twice", _set(f"{ORDER}.id", "fight-fire"), "grades.III.orders[1].id",
     "order id 'fight-fire' repeats orders[0]"),
    ("unit-kind-twice", _set("grades.III.units.1.kind", "fire_engine"),
     "grades.III.units[1].kind", "unit kind 'fire_engine' repeats units[0]"),
    ("id-not-stem", _set("id", "warehouse_blaze"), "id",
     "'warehouse_blaze' differs from the file name 'warehouse_fire.toml'"),
    # more severe grades need at least as much
    ("ii-fewer-engines-than-iii", _set("grades.II.units.0.count", 1),
     "grades.II.units[0].count", "1 fire_engine at grade II is less than 2 at grade III"),
    ("i-lacks-police", _set("grades.I.units", [{"kind": "fire_engine", "count": 8}]),
     "grades.I.units", "lacks unit kind 'police_car', which grade II needs (1)"),
    ("i-less-foam", _set("grades.I.materials.0.quantity", 500),
     "grades.I.materials[0].quantity", "500 foam at grade I is less than 800 at grade II"),
    ("ii-slower", _set("grades.II.response_time_target_minutes", 13),
     "grades.II.response_time_target_minutes",
     "13 min is longer than grade III's 12 min; a more severe grade must not have a longer"),
    ("material-unit-changes", _set("grades.I.materials.0.unit", "kg"),
     "grades.I.materials[0].unit",
     "must be 'litre' as at grade IV (one unit of measure for 'foam' at every grade), got 'kg'"),
]


@pytest.mark.parametrize(("edit", "field", "problem"), [c[1:] for c in BROKEN],
                         ids=[c[0] for c in BROKEN])
def test_a_broken_plan_is_refused_naming_file_field_and_problem(
        tmp_path: Path, edit: Edit, field: str, problem: str) -> None:
    doc = copy.deepcopy(valid())
    edit(doc)
    error = refused(write(tmp_path, doc))
    assert error.field == field
    assert problem in error.problem


def test_the_first_problem_in_file_order_is_reported(tmp_path: Path) -> None:
    doc = valid()
    doc["grades"]["I"]["orders"][0]["tier"] = "county"
    doc["grades"]["IV"]["orders"][1]["ack_minutes"] = -1
    assert refused(write(tmp_path, doc)).field == "grades.IV.orders[1].ack_minutes"


def test_invalid_toml_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "warehouse_fire.toml"
    path.write_text('id = "warehouse_fire"\nversion = 1\ntitle = "Warehouse fire\n')
    error = refused(path)
    assert error.field == "(file)"
    assert "invalid TOML" in error.problem and "line 3" in error.problem


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "warehouse_fire.toml"
    path.write_bytes(b'title = "\xff"\n')
    assert "UTF-8" in refused(path).problem


def test_two_plans_claiming_one_hazard_type_are_refused_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path, valid("a_fire", ("warehouse_fire", "factory_fire")), "a_fire")
    second = write(tmp_path, valid("b_fire", ("shop_fire", "factory_fire")), "b_fire")
    with pytest.raises(PlanError) as caught:
        PlanLibrary.load(tmp_path)
    error = caught.value
    assert error.file == str(second) and error.field == "hazard_types[1]"
    assert str(first) in error.problem and "'factory_fire'" in error.problem
    assert str(first) in str(error) and str(second) in str(error)


def test_a_library_loads_every_plan_of_a_directory(tmp_path: Path) -> None:
    write(tmp_path, valid("a_fire", ("warehouse_fire",)), "a_fire")
    write(tmp_path, valid("b_fire", ("shop_fire", "factory_fire")), "b_fire")
    (tmp_path / "notes.md").write_text("not a plan")
    library = PlanLibrary.load(tmp_path)
    assert [p.id for p in library.plans] == ["a_fire", "b_fire"]
    assert library.hazard_types() == ["factory_fire", "shop_fire", "warehouse_fire"]
    plan = library.plan_for("shop_fire")
    assert plan is not None and plan is library.get("b_fire")


def test_a_broken_file_stops_the_library_loading(tmp_path: Path) -> None:
    write(tmp_path, valid("a_fire"), "a_fire")
    broken = valid("b_fire", ("shop_fire",))
    del broken["version"]
    path = write(tmp_path, broken, "b_fire")
    with pytest.raises(PlanError, match=r"b_fire\.toml: version: is required"):
        PlanLibrary.load(tmp_path)
    assert path.exists()


def test_an_empty_or_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no plan files"):
        PlanLibrary.load(tmp_path)
    with pytest.raises(PlanError, match="no such directory"):
        PlanLibrary.load(tmp_path / "missing")


def _shipped(name: str = "high_rise_fire") -> dict[str, Any]:
    return tomllib.loads((PLANS_DIR / f"{name}.toml").read_text(encoding="utf-8"))


def _fewer_engines_at_ii(doc: dict[str, Any]) -> str:
    grades = doc["grades"]
    need = next(u["count"] for u in grades["III"]["units"] if u["kind"] == "fire_engine")
    index, unit = next((i, u) for i, u in enumerate(grades["II"]["units"])
                       if u["kind"] == "fire_engine")
    unit["count"] = need - 1
    return f"grades.II.units[{index}].count"


def _first_order_complete_at_ack(doc: dict[str, Any]) -> str:
    order = doc["grades"]["IV"]["orders"][0]
    order["complete_minutes"] = order["ack_minutes"]
    return "grades.IV.orders[0].complete_minutes"


def _first_order_to_unnotified(doc: dict[str, Any]) -> str:
    doc["grades"]["IV"]["orders"][0]["department"] = "sanitation"
    return "grades.IV.orders[0].department"


def _put(key: str, value: Any) -> Callable[[dict[str, Any]], str]:
    def edit(doc: dict[str, Any]) -> str:
        doc[key] = value
        return key
    return edit


def _without_title(doc: dict[str, Any]) -> str:
    del doc["title"]
    return "title"


def _without_grade_i(doc: dict[str, Any]) -> str:
    del doc["grades"]["I"]
    return "grades.I"


SHIPPED_BREAKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "missing field": _without_title,
    "wrong type": _put("version", "one"),
    "unknown field": _put("colour", "red"),
    "grade missing": _without_grade_i,
    "complete at ack": _first_order_complete_at_ack,
    "department not notified": _first_order_to_unnotified,
    "grade II fewer fire engines than III": _fewer_engines_at_ii,
}


@pytest.mark.parametrize("case", SHIPPED_BREAKS)
def test_a_broken_copy_of_a_shipped_plan_is_refused(tmp_path: Path, case: str) -> None:
    """The shipped high-rise fire plan, copied and broken in one place."""
    assert load_plan(write(tmp_path, _shipped(), "high_rise_fire")).grades == load_plan(
        PLANS_DIR / "high_rise_fire.toml").grades  # the copy alone is fine
    doc = _shipped()
    field = SHIPPED_BREAKS[case](doc)
    error = refused(write(tmp_path, doc, "high_rise_fire"))
    assert error.field == field
    assert "high_rise_fire.toml" in str(error) and field in str(error) and error.problem


def test_a_shipped_plan_under_another_name_is_refused(tmp_path: Path) -> None:
    error = refused(write(tmp_path, _shipped(), "tower_fire"))
    assert error.field == "id" and "tower_fire.toml" in error.problem


def test_two_shipped_plans_claiming_one_hazard_type_are_refused(tmp_path: Path) -> None:
    write(tmp_path, _shipped(), "high_rise_fire")
    copy_ = _shipped()
    copy_["id"] = "tower_fire"
    second = write(tmp_path, copy_, "tower_fire")
    with pytest.raises(PlanError) as caught:
        PlanLibrary.load(tmp_path)
    assert caught.value.file == str(second)
    assert caught.value.field == "hazard_types[0]"
    assert "'high_rise_fire'" in caught.value.problem
    assert "high_rise_fire.toml" in caught.value.problem
