"""lifeline-resources recommend, explain, close-road, reopen-road, coverage and move-ups:
which units would go, why those went, the roads they cannot take, the gaps they leave."""

from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from lifeline.cli import choices, render
from lifeline.common.v1 import common_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc
from rich.console import Group
from rich.table import Table
from rich.text import Text

Stub = Callable[[], resources_pb2_grpc.ResourcesServiceStub]


def need(text: str) -> pb.UnitNeed:
    """KIND or KIND=COUNT, e.g. ambulance=2."""
    kind, _, count = text.partition("=")
    if not kind or (count and not count.isdigit()):
        raise typer.BadParameter(f"{text!r}: write KIND or KIND=COUNT, e.g. ambulance=2")
    return pb.UnitNeed(unit_kind=kind, count=int(count or 1))


def assignments(rows: Sequence[pb.Assignment]) -> Table:
    """One line per unit sent, then one per unit passed over, indented under it."""
    grid = render.table("rank", "unit", "kind", "eta", "distance", "from / why not")
    for a in rows:
        render.add_row(grid, a.rank, a.unit_id, a.unit_kind, f"{a.eta_seconds / 60:.1f} min",
                       f"{a.distance_km:.2f} km", a.origin)
        for p in a.passed_over:
            render.add_row(grid, "", f"  not {p.unit_id}", "", "", "", p.reason, style="dim")
    return grid


def _explained(rows: Sequence[pb.Assignment], shortfalls: Sequence[pb.Shortfall]) -> Group:
    parts: list[Table | Text] = [assignments(rows)] if rows else [Text("no unit available")]
    parts += [Text(f"travel time: {b}") for b in sorted({a.basis for a in rows})]
    parts += [Text(f"short of {s.missing} {s.unit_kind}", style="bold red") for s in shortfalls]
    return Group(*parts)


def add_commands(app: typer.Typer, stub: Stub) -> None:
    @app.command(help="Which units would go to a place now, and why.")
    def recommend(
        needs: Annotated[list[str], typer.Argument(
            metavar="KIND[=COUNT]", help="unit kinds and how many, e.g. ambulance=2 "
            "fire_engine")],
        lat: Annotated[float, typer.Option(help="latitude of the place")],
        lon: Annotated[float, typer.Option(help="longitude of the place")],
    ) -> None:
        answer = stub().RecommendUnits(pb.RecommendUnitsRequest(
            location=common_pb2.GeoPoint(lat=lat, lon=lon), needs=[need(n) for n in needs]))
        render.show(answer, lambda: _explained(answer.recommended, answer.shortfalls))

    @app.command(help="Why an answered resource request sent the units it did.")
    def explain(request: Annotated[str, typer.Argument(
            help="the request id (on the incident's resources_requested)")]) -> None:
        answer = stub().GetRequest(pb.GetRequestRequest(id=request)).answer
        render.show(answer, lambda: _explained(answer.assignments, answer.shortfalls))

    @app.command("close-road", help="Close a segment of the loaded road graph.")
    def close_road(
        segment: Annotated[str, typer.Argument(help="the segment id in the road graph "
                                                    "(LIFELINE_ROADS)")],
        reason: Annotated[str, typer.Option(help="why, e.g. 'flooded, 0.6 m'")],
    ) -> None:
        closed = stub().CloseRoad(pb.CloseRoadRequest(segment_id=segment, reason=reason)
                                  ).segment
        render.show(closed, lambda: f"road {closed.id} closed: {closed.reason}")

    @app.command("reopen-road", help="Open a closed segment again.")
    def reopen_road(segment: Annotated[str, typer.Argument(
            help="the segment id in the road graph")]) -> None:
        opened = stub().ReopenRoad(pb.ReopenRoadRequest(segment_id=segment)).segment
        render.show(opened, lambda: f"road {opened.id} open")

    @app.command(help="Coverage requirements, gaps first, and the move-ups suggested.")
    def coverage(gaps: Annotated[bool, typer.Option(
            "--gaps", help="only the requirements not met now")] = False) -> None:
        listed = stub().ListCoverage(pb.ListCoverageRequest(gaps_only=gaps)).coverage

        def people(found: list[pb.Coverage]) -> Table:
            grid = render.table("requirement", "kind", "covering", "within", "", "move-up")
            for c in found:
                move = c.move_up
                suggested = (f"{move.id}: {move.unit_id} ({move.eta_seconds / 60:.1f} min) "
                             + choices.enum_label(pb.MoveUpStatus, move.status,
                                                  "MOVE_UP_STATUS_").lower() if move.id else "")
                render.add_row(grid, c.requirement_id, c.unit_kind, f"{c.covering}/{c.minimum}",
                               f"{c.within_seconds / 60:g} min",
                               render.cell("GAP", "bold white on red") if c.gap else "met",
                               suggested)
            return grid
        render.show_list(listed, people, order=lambda c: (not c.gap, c.requirement_id))

    def decide(accept: bool, move_up: str, reason: str) -> None:
        request = pb.MoveUpDecisionRequest(move_up_id=move_up, reason=reason)
        answer = (stub().AcceptMoveUp if accept else stub().DeclineMoveUp)(request).coverage
        move = answer.move_up
        verb = "accepted: moves to" if accept else "declined: stays; the gap at"
        render.show(answer, lambda: f"move-up {move.id} {verb} "
                    f"{answer.name or answer.requirement_id} ({move.unit_id})")

    @app.command("accept-moveup", help="Move the suggested unit's station to the gap.")
    def accept_moveup(
        id: Annotated[str, typer.Argument(help="the move-up id (see `coverage`)")],
        reason: Annotated[str, typer.Option(help="a note for the record")] = "",
    ) -> None:
        decide(True, id, reason)

    @app.command("decline-moveup", help="Keep the unit where it is.")
    def decline_moveup(
        id: Annotated[str, typer.Argument(help="the move-up id (see `coverage`)")],
        reason: Annotated[str, typer.Option(help="why not, for the record")],
    ) -> None:
        decide(False, id, reason)
