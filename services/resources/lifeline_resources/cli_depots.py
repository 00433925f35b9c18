"""lifeline-resources depot ... and use ...: depots and their stock, for duty officers."""

import re
from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from lifeline.cli import choices, render, times
from lifeline.common.v1 import common_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc
from rich.table import Table

MATERIAL = re.compile(r"^(?P<name>[^=]+)=(?P<quantity>\d+):(?P<unit>.+)$")
Stub = Callable[[], resources_pb2_grpc.ResourcesServiceStub]
Depot = Annotated[str, typer.Argument(metavar="DEPOT", help="the depot's id")]
At = Annotated[str | None, typer.Option(
    metavar="TIME", help="when (ISO-8601; without a zone, in the city's zone; default now)")]


def material(text: str) -> pb.Material:
    """NAME=QUANTITY:UNIT, e.g. sandbags=500:bag."""
    found = MATERIAL.match(text)
    if found is None:
        raise typer.BadParameter(f"{text!r}: write NAME=QUANTITY:UNIT, e.g. sandbags=500:bag")
    return pb.Material(name=found["name"], quantity=int(found["quantity"]), unit=found["unit"])


def _materials(texts: Sequence[str] | None) -> list[pb.Material]:
    return [material(t) for t in texts or []]


def depots_table(depots: Sequence[pb.Depot]) -> Table:
    grid = render.table("depot", "department", "position", "material", "unit", "available",
                        "reserved", "consumed")
    for d in depots:
        where = f"{d.position.lat:.5f},{d.position.lon:.5f}"
        for s in d.stock:
            render.add_row(grid, d.id, d.department, where, s.material, s.unit,
                           render.cell(s.available, "bold red" if not s.available else None),
                           s.reserved, s.consumed)
        if not d.stock:
            render.add_row(grid, d.id, d.department, where, "", "", "", "", "")
    return grid


def add_commands(app: typer.Typer, stub: Stub,
                 departments: Callable[[str], list[str]]) -> None:
    depot = typer.Typer(help="Depots of materials: register, list, show, restock.",
                        no_args_is_help=True)
    app.add_typer(depot, name="depot")

    def _show(found: pb.Depot) -> None:
        render.show(found, lambda: depots_table([found]))

    @depot.command("register", help="Register a depot with its opening stock.")
    def register(
        id: Depot,
        department: Annotated[str, typer.Option(help="the department that runs it",
                                                autocompletion=departments)],
        lat: Annotated[float, typer.Option(help="latitude of the depot")],
        lon: Annotated[float, typer.Option(help="longitude of the depot")],
        materials: Annotated[list[str] | None, typer.Argument(
            metavar="NAME=QUANTITY:UNIT", help="opening stock, e.g. sandbags=3000:bag")
        ] = None,
        name: Annotated[str, typer.Option(help="what people call it")] = "",
        new_names: Annotated[bool, typer.Option("--new-names", help=choices.NEW_NAMES_HELP)
                             ] = False,
    ) -> None:
        _show(stub().RegisterDepot(pb.RegisterDepotRequest(
            id=id, name=name, department=department,
            position=common_pb2.GeoPoint(lat=lat, lon=lon),
            stock=_materials(materials), new_names=new_names)).depot)

    @depot.command("list", help="List depots and their stock, every page.")
    def list_(
        department: Annotated[str, typer.Option(help="only this department's depots")] = "",
        limit: Annotated[int, typer.Option(min=0, help=render.LIMIT_HELP)] = 0,
    ) -> None:
        def fetch(token: str) -> tuple[Sequence[pb.Depot], str]:
            answer = stub().ListDepots(pb.ListDepotsRequest(department=department,
                                                             page=render.page(token)))
            return answer.depots, answer.next_page_token
        render.show_list(render.pages(fetch, "depots", limit), depots_table,
                         order=lambda d: (d.department, d.id))

    @depot.command("show", help="Show one depot and its stock.")
    def show(id: Depot) -> None:
        _show(stub().GetDepot(pb.GetDepotRequest(id=id)).depot)

    @depot.command("restock", help="Record a delivery to a depot.")
    def restock(
        id: Depot,
        materials: Annotated[list[str], typer.Argument(
            metavar="NAME=QUANTITY:UNIT", help="what was delivered, e.g. sandbags=500:bag")],
        at: At = None,
    ) -> None:
        request = pb.RestockDepotRequest(id=id, materials=_materials(materials))
        if at:
            request.occurred_at.CopyFrom(times.timestamp(at))
        _show(stub().RestockDepot(request).depot)

    @app.command(help="Report materials an incident consumed or returned.")
    def use(
        depot: Depot,
        incident: Annotated[str, typer.Argument(help="the incident's id")],
        use: Annotated[str, choices.enum_argument(pb.MaterialUse, "MATERIAL_USE_",
                                                  "consumed or returned")],
        materials: Annotated[list[str], typer.Argument(
            metavar="NAME=QUANTITY:UNIT", help="what, e.g. sandbags=150:bag")],
        at: At = None,
    ) -> None:
        request = pb.ReportMaterialUseRequest(
            depot_id=depot, incident_id=incident, materials=_materials(materials),
            use=choices.enum_value(pb.MaterialUse, "MATERIAL_USE_", use))  # type: ignore[arg-type]
        if at:
            request.occurred_at.CopyFrom(times.timestamp(at))
        _show(stub().ReportMaterialUse(request).depot)
