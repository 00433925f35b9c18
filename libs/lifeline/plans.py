"""Emergency plans (应急预案) as data: one TOML file per plan under plans/, by grade and by
department (分级别+分部门).

A plan file is checked against plans/schema.json (JSON Schema, draft 2020-12) and then against
the rules a schema cannot express: the id equals the file stem, an order goes to a department
the grade notifies and must be acknowledged before it is due, and a more severe grade needs at
least as much as a less severe one (units and materials of every kind, response-time target).
Every refusal is a PlanError naming the file, the field and the problem.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
from jsonschema import ValidationError  # type: ignore[import-untyped,unused-ignore]

from lifeline import settings as environment
from lifeline.documents import TooDeep, load_toml
from lifeline.incident.v1 import incident_pb2

#: The shipped plans: package data (shipped/plans links to plans/ in the source tree).
PLANS_DIR = Path(__file__).resolve().parent / "shipped" / "plans"
SCHEMA_PATH = PLANS_DIR / "schema.json"

#: Grade names in plan files, most severe first, and their incident_pb2.Grade values.
GRADES: dict[str, int] = {"I": incident_pb2.GRADE_I, "II": incident_pb2.GRADE_II,
                          "III": incident_pb2.GRADE_III, "IV": incident_pb2.GRADE_IV}
GRADE_NAMES: dict[int, str] = {value: name for name, value in GRADES.items()}
CATEGORIES: dict[str, int] = {
    "natural_disaster": incident_pb2.CATEGORY_NATURAL_DISASTER,
    "accident_disaster": incident_pb2.CATEGORY_ACCIDENT_DISASTER,
    "public_health": incident_pb2.CATEGORY_PUBLIC_HEALTH,
    "social_safety": incident_pb2.CATEGORY_SOCIAL_SAFETY,
}
TIERS = ("city", "district", "community")

#: Human words for the schema's patterns.
PATTERNS = {
    "^[a-z0-9_]+$": "lower-case letters, digits and '_'",
    "^[a-z0-9-]+$": "lower-case letters, digits and '-'",
    "^[a-z_]+$": "lower-case letters and '_'",
}
TYPE_WORDS = {"integer": "an integer", "string": "a string", "boolean": "true or false",
              "object": "a table", "array": "an array", "number": "a number"}


class PlanError(ValueError):
    """A plan file refused: which file, which field (dotted, [i] for arrays), what is wrong."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.file}: {field}: {problem}")


@dataclass(frozen=True)
class OrderTemplate:
    """An order the plan gives at a grade; issued when the grade comes into force."""

    id: str
    department: str
    tier: str
    instruction: str
    life_safety: bool
    ack_minutes: int
    complete_minutes: int
    unit_kind: str = ""


@dataclass(frozen=True)
class Material:
    name: str
    quantity: int
    unit: str


@dataclass(frozen=True)
class GradeSpec:
    """What the plan says an incident of one grade needs."""

    grade: int
    response_time_target_minutes: int
    notify: tuple[str, ...]
    units: tuple[tuple[str, int], ...]
    materials: tuple[Material, ...]
    orders: tuple[OrderTemplate, ...]

    def requirements(self) -> list[incident_pb2.UnitRequirement]:
        return [incident_pb2.UnitRequirement(unit_kind=kind, count=count)
                for kind, count in self.units]

    def count(self, unit_kind: str) -> int:
        return sum(count for kind, count in self.units if kind == unit_kind)


@dataclass(frozen=True)
class Plan:
    id: str
    version: int
    title: str
    category: int
    hazard_types: tuple[str, ...]
    grades: dict[int, GradeSpec]
    #: sha256 hex of the file's bytes: exactly which plan text a replay must assume.
    content_hash: str
    path: Path

    def for_grade(self, grade: int) -> GradeSpec:
        spec = self.grades.get(grade)
        if spec is None:
            raise ValueError(f"plan {self.id!r} has no grade {grade}; grades are "
                             f"{', '.join(f'{v} ({n})' for n, v in GRADES.items())}")
        return spec


# ---- loading one file ----


@functools.cache
def _validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    base = jsonschema.Draft202012Validator
    base.check_schema(schema)
    # TOML has real integers: 1.0 is a float there, not the integer JSON Schema allows.
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool))
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def load_plan(path: Path) -> Plan:
    """Read, check and build one plan file; PlanError says what is wrong and where."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PlanError(path, "(file)", f"cannot read: {e.strerror or e}") from e
    try:
        doc = load_toml(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PlanError(path, "(file)", f"not UTF-8 text: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise PlanError(path, "(file)", f"invalid TOML: {e}") from e
    except TooDeep as e:
        raise PlanError(path, "(file)", str(e)) from e
    errors = sorted(_validator().iter_errors(doc), key=lambda e: _error_order(doc, e))
    if errors:
        field, problem = _explain(errors[0])
        raise PlanError(path, field, problem)
    _check_rules(path, doc)
    return _build(path, doc, hashlib.sha256(data).hexdigest())


def _check_rules(path: Path, doc: dict[str, Any]) -> None:
    """The rules JSON Schema cannot express."""
    if doc["id"] != path.stem:
        raise PlanError(path, "id", f"{doc['id']!r} differs from the file name {path.name!r}; "
                                    "a plan's id must equal its file stem")
    for name in GRADES:
        grade = doc["grades"][name]
        where = f"grades.{name}"
        _no_repeats(path, where, "units", [u["kind"] for u in grade["units"]], "kind",
                    "unit kind")
        _no_repeats(path, where, "materials", [m["name"] for m in grade.get("materials", [])],
                    "name", "material")
        _no_repeats(path, where, "orders", [o["id"] for o in grade["orders"]], "id", "order id")
        kinds = [u["kind"] for u in grade["units"]]
        for i, order in enumerate(grade["orders"]):
            at = f"{where}.orders[{i}]"
            if order["department"] not in grade["notify"]:
                raise PlanError(path, f"{at}.department",
                                f"{order['department']!r} is not notified at grade {name} "
                                f"(notify: {', '.join(grade['notify'])})")
            if order["complete_minutes"] <= order["ack_minutes"]:
                raise PlanError(path, f"{at}.complete_minutes",
                                f"must be greater than ack_minutes ({order['ack_minutes']}), "
                                f"got {order['complete_minutes']} (an order is acknowledged "
                                "before it is due)")
            if "unit_kind" in order and order["unit_kind"] not in kinds:
                raise PlanError(path, f"{at}.unit_kind",
                                f"{order['unit_kind']!r} is not among the units grade {name} "
                                f"dispatches ({', '.join(kinds)})")
    measure: dict[str, tuple[str, str]] = {}  # material -> (unit, grade that set it)
    for name in reversed(GRADES):  # from the mildest grade up
        for i, m in enumerate(doc["grades"][name].get("materials", [])):
            unit, first = measure.setdefault(m["name"], (m["unit"], name))
            if m["unit"] != unit:
                raise PlanError(path, f"grades.{name}.materials[{i}].unit",
                                f"must be {unit!r} as at grade {first} (one unit of measure "
                                f"for {m['name']!r} at every grade), got {m['unit']!r}")
    _check_monotonic(path, doc["grades"])


def _no_repeats(path: Path, where: str, key: str, values: Sequence[str], field: str,
                what: str) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise PlanError(path, f"{where}.{key}[{i}].{field}",
                            f"{what} {value!r} repeats {key}[{seen[value]}]")
        seen[value] = i


def _check_monotonic(path: Path, grades: Mapping[str, Any]) -> None:
    """More severe grades need at least as much; checked between neighbours, I<-II<-III<-IV."""
    names = list(GRADES)  # most severe first
    for severe, milder in itertools.pairwise(names):
        hi, lo = grades[severe], grades[milder]
        if hi["response_time_target_minutes"] > lo["response_time_target_minutes"]:
            raise PlanError(path, f"grades.{severe}.response_time_target_minutes",
                            f"{hi['response_time_target_minutes']} min is longer than grade "
                            f"{milder}'s {lo['response_time_target_minutes']} min; a more "
                            "severe grade must not have a longer target")
        for key, ident, amount, words in (("units", "kind", "count", "unit kind"),
                                          ("materials", "name", "quantity", "material")):
            have = {e[ident]: (i, e[amount]) for i, e in enumerate(hi.get(key, []))}
            for entry in lo.get(key, []):
                need = entry[amount]
                if entry[ident] not in have:
                    raise PlanError(path, f"grades.{severe}.{key}",
                                    f"lacks {words} {entry[ident]!r}, which grade {milder} needs "
                                    f"({need}); a more severe grade must need at least as much")
                i, got = have[entry[ident]]
                if got < need:
                    raise PlanError(path, f"grades.{severe}.{key}[{i}].{amount}",
                                    f"{got} {entry[ident]} at grade {severe} is less than "
                                    f"{need} at grade {milder}; a more severe grade must need "
                                    "at least as much")


def _build(path: Path, doc: dict[str, Any], content_hash: str) -> Plan:
    grades: dict[int, GradeSpec] = {}
    for name, value in GRADES.items():
        g = doc["grades"][name]
        grades[value] = GradeSpec(
            grade=value,
            response_time_target_minutes=g["response_time_target_minutes"],
            notify=tuple(g["notify"]),
            units=tuple((u["kind"], u["count"]) for u in g["units"]),
            materials=tuple(Material(m["name"], m["quantity"], m["unit"])
                            for m in g.get("materials", [])),
            orders=tuple(OrderTemplate(
                id=o["id"], department=o["department"], tier=o["tier"],
                instruction=o["instruction"], life_safety=o["life_safety"],
                ack_minutes=o["ack_minutes"], complete_minutes=o["complete_minutes"],
                unit_kind=o.get("unit_kind", "")) for o in g["orders"]))
    return Plan(id=doc["id"], version=doc["version"], title=doc["title"],
                category=CATEGORIES[doc["category"]], hazard_types=tuple(doc["hazard_types"]),
                grades=grades, content_hash=content_hash, path=path)


# ---- saying what a schema error means ----

#: Which of several errors at one place to report first (a misspelt key is both unknown and
#: missing: "unknown field 'ack_minute' (did you mean 'ack_minutes'?)" says more).
_KEYWORD_ORDER = {"type": 0, "additionalProperties": 1, "required": 2}


def _error_order(doc: Any, error: ValidationError) -> tuple[Any, ...]:
    """Errors in the order a reader meets them in the file (keys keep their TOML order)."""
    key: list[int] = []
    node = doc
    for step in error.absolute_path:
        if isinstance(node, dict):
            key.append(list(node).index(step) if step in node else len(node))
        else:
            key.append(int(step))
        node = node[step]
    # A problem with a whole table or array comes before problems inside it.
    return (*key, -1, _KEYWORD_ORDER.get(str(error.validator), 9))


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _describe(schema: Mapping[str, Any]) -> str:
    """What a value under this (sub)schema must be, in words."""
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    words = TYPE_WORDS.get(str(kind), f"of type {kind}") if kind else "a valid value"
    if "exclusiveMinimum" in schema:
        words += f" greater than {schema['exclusiveMinimum']}"
    elif "minimum" in schema:
        words += f" of at least {schema['minimum']}"
    if "pattern" in schema:
        words += " of " + PATTERNS.get(schema["pattern"], f"the form {schema['pattern']}")
    return words


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _explain(error: ValidationError) -> tuple[str, str]:
    """(dotted field, problem in words) for one JSON Schema error."""
    field = _dotted(error.absolute_path)
    keyword = str(error.validator)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    value: Any = error.instance
    expected: Any = error.validator_value
    if keyword == "required":
        missing = [k for k in expected if k not in value]
        name = missing[0] if missing else "?"
        if field == "grades" and name in GRADES:
            return _join(field, name), ("is required (a plan covers all four grades "
                                        "I, II, III and IV)")
        return _join(field, name), "is required"
    if keyword == "additionalProperties":
        known = list(schema.get("properties", {}))
        extra = [k for k in value if k not in known]
        name = extra[0] if extra else "?"
        problem = f"unknown field {name!r}"
        close = difflib.get_close_matches(name, known, n=1)
        problem += f" (did you mean {close[0]!r}?)" if close else (
            f" (known: {', '.join(known)})")
        return _join(field, name), problem
    if keyword in ("type", "minimum", "exclusiveMinimum", "pattern", "enum"):
        # The subschema for a $ref'd field is the referenced one; describe it whole.
        return field or "(top level)", f"must be {_describe(schema)}, got {_got(value)}"
    if keyword == "minItems":
        return field, "must not be empty"
    if keyword == "minLength":
        return field, "must not be empty"
    if keyword == "uniqueItems":
        seen: set[Any] = set()
        for i, item in enumerate(value):
            marker = json.dumps(item, sort_keys=True)
            if marker in seen:
                return f"{field}[{i}]", f"{item!r} is listed twice; entries must be unique"
            seen.add(marker)
        return field, "entries must be unique"
    return field or "(top level)", error.message


# ---- the library ----


class PlanLibrary:
    """The plans in force, by hazard type: one hazard type, one plan."""

    def __init__(self, plans: Iterable[Plan] = ()) -> None:
        self._plans: dict[str, Plan] = {}
        self._by_hazard: dict[str, Plan] = {}
        for plan in plans:
            if plan.id in self._plans:
                raise PlanError(plan.path, "id", f"plan id {plan.id!r} is also used by "
                                                 f"{self._plans[plan.id].path}")
            for i, hazard in enumerate(plan.hazard_types):
                other = self._by_hazard.get(hazard)
                if other is not None:
                    raise PlanError(plan.path, f"hazard_types[{i}]",
                                    f"hazard type {hazard!r} is also claimed by {other.path}; "
                                    "one hazard type, one plan")
                self._by_hazard[hazard] = plan
            self._plans[plan.id] = plan

    @classmethod
    def load(cls, directory: Path) -> PlanLibrary:
        """Every *.toml plan in a directory, in file-name order."""
        directory = Path(directory)
        if not directory.is_dir():
            raise PlanError(directory, "(directory)", "no such directory")
        files = sorted(directory.glob("*.toml"))
        if not files:
            raise PlanError(directory, "(directory)", "holds no plan files (*.toml)")
        return cls(load_plan(f) for f in files)

    def plan_for(self, hazard_type: str) -> Plan | None:
        return self._by_hazard.get(hazard_type)

    def get(self, plan_id: str) -> Plan | None:
        return self._plans.get(plan_id)

    @property
    def plans(self) -> list[Plan]:
        return list(self._plans.values())

    def hazard_types(self) -> list[str]:
        return sorted(self._by_hazard)


@functools.cache
def default_library() -> PlanLibrary:
    """The plans in the folder LIFELINE_PLANS names, else the shipped ones; loaded once."""
    return PlanLibrary.load(environment.load().plans or PLANS_DIR)


__all__ = ["CATEGORIES", "GRADES", "GRADE_NAMES", "PLANS_DIR", "GradeSpec", "Material",
           "OrderTemplate", "Plan", "PlanError", "PlanLibrary", "default_library", "load_plan"]
