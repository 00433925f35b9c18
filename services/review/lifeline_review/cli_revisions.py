"""lifeline-review's plan revision commands (预案修订): propose one with its evidence, accept
or reject it, show it, export an accepted one as the plan file, list them."""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from lifeline.cli import choices, errors, render, times
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc
from rich.table import Table

Stub = Callable[[], review_pb2_grpc.ReviewServiceStub]
Revision = Annotated[str, typer.Argument(metavar="REVISION", help="the revision's id")]


def _finding(text_: str) -> pb.Finding:
    """measure=observed/target[:unit], e.g. response_time_p90=18.5/15:minutes."""
    try:
        measure, numbers = text_.split("=", 1)
        numbers, _, unit = numbers.partition(":")
        observed, target = numbers.split("/", 1)
        return pb.Finding(measure=measure, observed=float(observed), target=float(target),
                          unit=unit)
    except ValueError:
        raise typer.BadParameter(f"--finding {text_!r}: expected MEASURE=OBSERVED/TARGET"
                                 "[:UNIT], e.g. response_time_p90=18.5/15:minutes") from None


def _revision_table(r: pb.PlanRevision) -> Table:
    grid = render.table("field", "value", caption=times.times_caption())
    for row in (
        ["revision", r.id], ["plan", f"{r.plan_id} v{r.from_version} -> v{r.to_version}"],
        ["status", choices.enum_label(pb.PlanRevisionStatus, r.status,
                                      "PLAN_REVISION_STATUS_").lower()],
        ["proposed", f"{r.proposed_by} at {times.when(r.proposed_at)}: {r.reason}"],
        ["evidence", ", ".join(r.incident_ids) or "-"],
        *[[f"finding {f.measure}", f"{f.observed:g} against {f.target:g} {f.unit}"]
          for f in r.findings],
        ["decided", f"{r.decided_by} at {times.when(r.decided_at)}: {r.decision_reason}"
         if r.decided_by else "-"],
        ["content sha256", r.content_hash],
    ):
        render.add_row(grid, *row)
    return grid


def _show_revision(r: pb.PlanRevision) -> None:
    render.show(r, lambda: _revision_table(r))


Reason = Annotated[str, typer.Option(help="why (kept with the revision)")]


def add_commands(app: typer.Typer, _stub: Stub) -> None:
    revision = typer.Typer(help="Plan revisions (预案修订): propose one with its evidence, "
                                "accept or reject it, show it, export an accepted one as the "
                                "plan file.", no_args_is_help=True)
    app.add_typer(revision, name="revision")

    @revision.command("propose", help="Propose a revised plan with its evidence (another "
                                          "person accepts or rejects it).")
    def revision_propose(
        plan: Annotated[str, typer.Argument(metavar="PLAN", help="the plan's id")],
        file: Annotated[Path, typer.Option(metavar="FILE",
                                           help="the plan file as it should read (TOML)")],
        reason: Reason = "",
        incident: Annotated[list[str] | None, typer.Option(
            help="an incident as evidence (repeatable)")] = None,
        finding: Annotated[list[str] | None, typer.Option(
            metavar="MEASURE=OBSERVED/TARGET[:UNIT]", help="a number behind it (repeatable)")
        ] = None,
    ) -> None:
        try:
            plan_toml = file.read_bytes()
        except OSError as error:
            errors.fail(f"--file: cannot read {file}: {error.strerror}")
        _show_revision(_stub().ProposePlanRevision(pb.ProposePlanRevisionRequest(
            plan_id=plan, plan_toml=plan_toml, reason=reason, incident_ids=incident or [],
            findings=[_finding(f) for f in finding or []])))


    @revision.command("accept", help="Accept a proposed revision (not your own).")
    def revision_accept(revision: Revision, reason: Reason = "") -> None:
        _show_revision(_stub().DecidePlanRevision(pb.DecidePlanRevisionRequest(
            revision_id=revision, accept=True, reason=reason)))


    @revision.command("reject", help="Reject a proposed revision.")
    def revision_reject(revision: Revision, reason: Reason = "") -> None:
        _show_revision(_stub().DecidePlanRevision(pb.DecidePlanRevisionRequest(
            revision_id=revision, accept=False, reason=reason)))


    @revision.command("show", help="Show a revision.")
    def revision_show(revision: Revision) -> None:
        _show_revision(_stub().GetPlanRevision(pb.GetPlanRevisionRequest(revision_id=revision)))


    @revision.command("export", help="Write an accepted revision as the plan's next version.")
    def revision_export(
        revision: Revision,
        output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE",
                                             help="where to write the plan file, e.g. "
                                                  "plans/urban_flooding.toml")],
    ) -> None:
        answer = _stub().GetPlanRevision(pb.GetPlanRevisionRequest(revision_id=revision))
        if answer.status != pb.PLAN_REVISION_STATUS_ACCEPTED:
            errors.fail(f"revision {answer.id} is not accepted; only an accepted revision becomes "
                        "the plan's next version")
        output.write_bytes(answer.plan_toml)
        render.show(answer, lambda: f"wrote {answer.plan_id} v{answer.to_version} to {output}; "
                    "dispatch loads it as the plan in force when it next starts with that plans "
                    "folder")


    @app.command(help="List plan revisions, every page: proposed first.")
    def revisions(
        plan: Annotated[str, typer.Option(help="only this plan's revisions")] = "",
        limit: Annotated[int, typer.Option(min=0, help=render.LIMIT_HELP)] = 0,
    ) -> None:
        def fetch(token: str) -> tuple[Sequence[pb.PlanRevision], str]:
            answer = _stub().ListPlanRevisions(pb.ListPlanRevisionsRequest(plan_id=plan,
                                                                            page=render.page(token)))
            return answer.revisions, answer.next_page_token

        def people(found: list[pb.PlanRevision]) -> Table:
            grid = render.table("revision", "plan", "versions", "status", "proposed by", "reason")
            for r in found:
                render.add_row(grid, r.id, r.plan_id, f"{r.from_version} -> {r.to_version}",
                               choices.enum_label(pb.PlanRevisionStatus, r.status,
                                                  "PLAN_REVISION_STATUS_").lower(),
                               r.proposed_by, r.reason)
            return grid
        render.show_list(render.pages(fetch, "revisions", limit), people,
                         order=lambda r: (r.status != pb.PLAN_REVISION_STATUS_PROPOSED,
                                          -r.proposed_at.seconds, r.id))
