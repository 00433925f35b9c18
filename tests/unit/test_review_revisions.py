"""Plan revisions (预案修订): a proposal carries the plan file as it should read and its
evidence; it is checked as dispatch would load the plan (schema, same id, next version),
and another evaluator than the proposer accepts or rejects it, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause
from lifeline.plans import default_library
from lifeline.review.v1 import review_pb2 as pb
from lifeline_review.domain import PlanRevision

NOW = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)
IN_FORCE = default_library().get("urban_flooding")
SHIPPED = Path(__file__).parents[2] / "plans" / "urban_flooding.toml"


def revised(version: int | None = None, target: str = "25") -> bytes:
    assert IN_FORCE is not None
    text = SHIPPED.read_text().replace(f"version = {IN_FORCE.version}\n",
                                       f"version = {version or IN_FORCE.version + 1}\n", 1)
    return text.replace("response_time_target_minutes = 30",
                        f"response_time_target_minutes = {target}", 1).encode()


def propose(plan_toml: bytes, reason: str = "grade IV p90 response 34 min, target 30"
            ) -> PlanRevision:
    return PlanRevision.propose(
        "urban_flooding", plan_toml, IN_FORCE, ["a1164ce4-85ff-4009-a573-9d9627747ecd"],
        [pb.Finding(measure="response_time_p90", observed=34, target=30, unit="minutes")],
        Cause("evaluator-qian", NOW, reason=reason), NOW)


def test_a_proposal_names_the_versions_and_keeps_its_evidence() -> None:
    assert IN_FORCE is not None
    revision = propose(revised())
    v = revision.view
    assert (v.plan_id, v.from_version, v.to_version) == (
        "urban_flooding", IN_FORCE.version, IN_FORCE.version + 1)
    assert v.status == pb.PLAN_REVISION_STATUS_PROPOSED
    assert v.proposed_by == "evaluator-qian" and v.reason.startswith("grade IV p90")
    assert v.findings[0].observed == 34 and len(v.incident_ids) == 1
    assert b"response_time_target_minutes = 25" in v.plan_toml and len(v.content_hash) == 64


@pytest.mark.parametrize(("plan_toml", "field"), [
    (revised(version=7), "plan_toml: version"),
    (revised(target='"soon"'), "plan_toml: grades.IV.response_time_target_minutes"),
    (revised().replace(b'id = "urban_flooding"', b'id = "gas_leak"', 1), "plan_toml: id"),
    (b"not = [toml", "plan_toml: (file)"),
])
def test_a_plan_file_dispatch_could_not_load_is_refused_naming_the_field(
        plan_toml: bytes, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        propose(plan_toml)
    assert refused.value.field == field


#: 2 KB that make a recursive parser (or what reads its result) run out of stack.
DEEP_TOML = {
    "arrays": b"a = " + b"[" * 1000 + b"]" * 1000,
    "inline tables": b"a = " + b"{b = " * 1000 + b"1" + b"}" * 1000,
    "dotted keys": b"a" + b".a" * 1000 + b" = 1",
    "table header": b"[" + b"a." * 1000 + b"a]\n",
}


@pytest.mark.parametrize("shape", DEEP_TOML)
def test_a_plan_file_nested_too_deep_is_refused(shape: str) -> None:
    with pytest.raises(InvalidArgument, match="nested deeper than 32 levels") as refused:
        propose(revised() + b"\n" + DEEP_TOML[shape])
    assert refused.value.field == "plan_toml: (file)"


def test_a_proposal_without_a_reason_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="reason"):
        propose(revised(), reason=" ")


def test_another_evaluator_decides_once() -> None:
    revision = propose(revised())
    with pytest.raises(RuleViolation, match="four-eyes"):
        revision.decide(True, Cause("evaluator-qian", NOW, reason="looks right"), NOW)
    revision.decide(True, Cause("evaluator-sun", NOW, reason="agreed at the review board"),
                    NOW)
    assert revision.view.status == pb.PLAN_REVISION_STATUS_ACCEPTED
    assert revision.view.decided_by == "evaluator-sun"
    with pytest.raises(RuleViolation, match=r"decide-once: .* already accepted"):
        revision.decide(False, Cause("evaluator-li", NOW, reason="too late"), NOW)
