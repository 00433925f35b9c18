"""lifeline-resources: the fleet of response units, for duty officers and crews."""

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from lifeline.cli import choices, connection, errors, render, times
from lifeline.cli.app import run, service_app
from lifeline.common.v1 import common_pb2, names_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc
from rich.table import Table

from lifeline_resources import cli_depots, cli_fleet
from lifeline_resources.domain import status_name

app = service_app("resources", "Response units: where they are, whom they serve.")

#: Committed units first (on scene, en route, assigned), then free ones, then out of service.
STATUS_ORDER = {common_pb2.UNIT_STATUS_ON_SCENE: 0, common_pb2.UNIT_STATUS_EN_ROUTE: 1,
                common_pb2.UNIT_STATUS_ASSIGNED: 2}
#: Units per RegisterUnits call when importing a file.
IMPORT_CHUNK = 5_000
STATUS_STYLES = {"ON_SCENE": "bold red", "EN_ROUTE": "bold yellow", "ASSIGNED": "yellow",
                 "AVAILABLE": "green", "AVAILABLE_ON_ROAD": "green",
                 "OUT_OF_SERVICE": "dim"}


def _stub() -> resources_pb2_grpc.ResourcesServiceStub:
    return resources_pb2_grpc.ResourcesServiceStub(connection.connect("resources"))


UNIT_KINDS = choices.known_names(_stub, names_pb2.NAME_KIND_UNIT_KIND)
DEPARTMENTS = choices.known_names(_stub, names_pb2.NAME_KIND_DEPARTMENT)


def units_table(units: Sequence[pb.Unit]) -> Table:
    grid = render.table("id", "kind", "department", "status", "incident", "since", "home",
                        caption=times.times_caption())
    for u in units:
        status = status_name(u.status)
        render.add_row(grid, u.id, u.kind, u.department,
                       render.cell(status, STATUS_STYLES.get(status)), u.incident_id,
                       times.when(u.status_since), f"{u.home.lat:.5f},{u.home.lon:.5f}")
    return grid


def unit_order(u: pb.Unit) -> tuple[Any, ...]:
    return (STATUS_ORDER.get(u.status, 5 if u.status == common_pb2.UNIT_STATUS_OUT_OF_SERVICE
                             else 3), u.kind, u.id)


@app.command(help="Register a unit at its home station.")
def register(
    id: Annotated[str, typer.Argument(help="the unit's id, e.g. pump-3")],
    kind: Annotated[str, typer.Option(help="fire_engine, ambulance, police_car, rescue_team, "
                                      "pump_truck, ...", autocompletion=UNIT_KINDS)],
    department: Annotated[str, typer.Option(help="fire, medical, police, water, ...",
                                            autocompletion=DEPARTMENTS)],
    lat: Annotated[float, typer.Option(help="latitude of its home station")],
    lon: Annotated[float, typer.Option(help="longitude of its home station")],
    capability: Annotated[list[str] | None, typer.Option(
        metavar="KIND", help="a further kind it counts for (repeatable), e.g. rescue_team",
        autocompletion=UNIT_KINDS)] = None,
    crew: Annotated[int, typer.Option(min=0, help="crew size")] = 0,
    new_names: Annotated[bool, typer.Option("--new-names", help=choices.NEW_NAMES_HELP)] = False,
) -> None:
    unit = _stub().RegisterUnit(pb.RegisterUnitRequest(
        id=id, kind=kind, department=department, home=common_pb2.GeoPoint(lat=lat, lon=lon),
        capabilities=capability or [], crew_size=crew, new_names=new_names)).unit
    render.show(unit, lambda: units_table([unit]))


@app.command("import-units", help="Register the units of a CSV file, in batches (those "
                                    "already registered are counted, left as they are).")
def import_units(
    file: Annotated[Path, typer.Argument(
        help="CSV with a header row: id, kind, department, lat, lon, and optionally "
             "capabilities (separated by ';') and crew")],
    new_names: Annotated[bool, typer.Option("--new-names", help=choices.NEW_NAMES_HELP)] = False,
) -> None:
    answer = pb.RegisterUnitsResponse()
    batch: list[pb.RegisterUnitRequest] = []

    def send(advance: Callable[[float], None]) -> None:
        done = _stub().RegisterUnits(pb.RegisterUnitsRequest(units=batch), timeout=600)
        answer.registered += done.registered
        answer.existing.extend(done.existing)
        advance(len(batch))
        batch.clear()

    with render.progress("registering units", None) as advance:
        try:
            with file.open(newline="", encoding="utf-8") as rows:
                for line, row in enumerate(csv.DictReader(rows), start=2):
                    batch.append(_unit(row, line, new_names))
                    if len(batch) == IMPORT_CHUNK:
                        send(advance)
        except (OSError, ValueError, KeyError) as error:
            errors.fail(f"{file}: {error}")
        if batch:
            send(advance)

    def people() -> Table:
        grid = render.table("registered", "already registered")
        render.add_row(grid, answer.registered, len(answer.existing))
        return grid
    render.show(answer, people)


def _unit(row: dict[str, str], line: int, new_names: bool) -> pb.RegisterUnitRequest:
    missing = [c for c in ("id", "kind", "department", "lat", "lon") if not row.get(c)]
    if missing:
        raise ValueError(f"line {line}: {', '.join(missing)} missing")
    try:
        home = common_pb2.GeoPoint(lat=float(row["lat"]), lon=float(row["lon"]))
        crew = int(row.get("crew") or 0)
    except ValueError:
        raise ValueError(f"line {line}: lat, lon and crew must be numbers") from None
    capabilities = [c.strip() for c in (row.get("capabilities") or "").split(";") if c.strip()]
    return pb.RegisterUnitRequest(id=row["id"], kind=row["kind"], department=row["department"],
                                  home=home, capabilities=capabilities, crew_size=crew,
                                  new_names=new_names)


@app.command(help="List units, every page: committed first (on scene, en route, "
                  "assigned), then free, then out of service.")
def units(
    kind: Annotated[str, typer.Option(help="only units of this kind",
                                      autocompletion=UNIT_KINDS)] = "",
    status: Annotated[str | None, choices.enum_option(
        common_pb2.UnitStatus, "UNIT_STATUS_", "only units in this status", "--status")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help=render.LIMIT_HELP)] = 0,
) -> None:
    def fetch(token: str) -> tuple[Sequence[pb.Unit], str]:
        answer = _stub().ListUnits(pb.ListUnitsRequest(
            page=render.page(token), kind=kind,
            status=choices.enum_value(common_pb2.UnitStatus, "UNIT_STATUS_", status)))  # type: ignore[arg-type]
        return answer.units, answer.next_page_token

    render.show_list(render.pages(fetch, "units", limit), units_table, order=unit_order)


@app.command(help="Show one unit.")
def unit(id: Annotated[str, typer.Argument(help="the unit's id")]) -> None:
    found = _stub().GetUnit(pb.GetUnitRequest(id=id)).unit
    render.show(found, lambda: units_table([found]))


@app.command(help="Report a unit's status (a crew's radio call).")
def status(
    id: Annotated[str, typer.Argument(help="the unit's id")],
    status: Annotated[str, choices.enum_argument(common_pb2.UnitStatus, "UNIT_STATUS_",
                                                 "its new status", exclude=["assigned"])],
    at: Annotated[str | None, typer.Option(
        metavar="TIME", help="when it happened (ISO-8601; without a zone, in the city's "
        "zone; default now)")] = None,
) -> None:
    request = pb.UpdateUnitStatusRequest(
        id=id, status=choices.enum_value(common_pb2.UnitStatus, "UNIT_STATUS_", status))  # type: ignore[arg-type]
    if at:
        request.occurred_at.CopyFrom(times.timestamp(at))
    u = _stub().UpdateUnitStatus(request).unit
    render.show(u, lambda: units_table([u]))


cli_depots.add_commands(app, _stub, DEPARTMENTS)
cli_fleet.add_commands(app, _stub)


def main(argv: Sequence[str] | None = None) -> None:
    run(app, "resources", argv)
