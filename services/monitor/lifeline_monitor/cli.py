"""lifeline-monitor: sensors, readings and warnings, for duty officers and gateways."""

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from lifeline.cli import choices, connection, errors, live, render, times
from lifeline.cli.app import run, service_app
from lifeline.common.v1 import common_pb2, names_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.validation import REPEATED_DEFAULT
from rich.table import Table

from lifeline_monitor import cli_alarms, cli_alerts, cli_rosters, grid

app = service_app("monitor", "Sensors, readings and graded warnings.")

STATUS_ORDER = {pb.WARNING_STATUS_ACTIVE: 0, pb.WARNING_STATUS_ACKNOWLEDGED: 1,
                pb.WARNING_STATUS_CLEARED: 2}
At = Annotated[str | None, typer.Option(
    metavar="TIME", help="when (ISO-8601; without a zone, in the city's zone; default now)")]
Hazard = Annotated[str, typer.Option(help="only this hazard, e.g. urban_flooding",
                                     autocompletion=lambda incomplete: HAZARDS(incomplete))]
Limit = Annotated[int, typer.Option(min=0, help=render.LIMIT_HELP)]


def _stub() -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(connection.connect("monitor"))


HAZARDS = choices.known_names(_stub, names_pb2.NAME_KIND_HAZARD)


def sensors_table(sensors: Sequence[pb.Sensor]) -> Table:
    grid_ = render.table("id", "kind", "hazard", "cell", "level", "thresholds (b/y/o/r)", "unit",
                         "shelved until", caption=times.times_caption())
    for s in sensors:
        render.add_row(grid_, s.id, s.kind, s.hazard, s.grid_cell, render.level_cell(s.level),
                       f"{s.thresholds.blue:g}/{s.thresholds.yellow:g}/{s.thresholds.orange:g}/"
                       f"{s.thresholds.red:g}", s.unit_of_measure,
                       times.when(s.shelving.until) if s.HasField("shelving") else "")
    return grid_


def warnings_table(warnings: Sequence[pb.Warning]) -> Table:
    grid_ = render.table("id", "level", "status", "hazard", "where", "sensors", "raised",
                         "updated", caption=times.times_caption())
    for w in warnings:
        status = choices.enum_label(pb.WarningStatus, w.status, "WARNING_STATUS_")
        render.add_row(grid_, w.id, render.level_cell(w.level), status, w.hazard,
                       w.responsible.cell_name or w.grid_cell, ",".join(sorted(w.sensor_levels)),
                       times.when(w.raised_at), times.when(w.updated_at),
                       style="dim" if w.status == pb.WARNING_STATUS_CLEARED else None)
    return grid_


def warning_order(w: pb.Warning) -> tuple[Any, ...]:
    """Not cleared first; then the worst colour; then the most recently raised."""
    return (STATUS_ORDER.get(w.status, 9), -w.level, -w.raised_at.seconds, w.id)


def sensor_order(s: pb.Sensor) -> tuple[Any, ...]:
    return (-s.level, s.id)


@app.command(help="Register a sensor with its thresholds (and, optionally, alarm rules).")
def register(
    id: Annotated[str, typer.Argument(help="the sensor's id, unique in the city")],
    kind: Annotated[str, typer.Option(help="what it measures: rainfall, water_level, gas, ...")],
    hazard: Annotated[str, typer.Option(help="the hazard it warns of: urban_flooding, "
                                        "gas_leak, ...", autocompletion=HAZARDS)],
    lat: Annotated[float, typer.Option(help="latitude (WGS84 degrees)")],
    lon: Annotated[float, typer.Option(help="longitude (WGS84 degrees)")],
    unit: Annotated[str, typer.Option(help="unit of measure, e.g. mm/h or m")],
    thresholds: Annotated[tuple[float, float, float, float], typer.Option(
        metavar="BLUE YELLOW ORANGE RED",
        help="the value at which each colour starts, in the sensor's unit")],
    cell: Annotated[str, typer.Option(help="grid cell (default: from the location)")] = "",
    direction: Annotated[str, choices.enum_option(
        pb.Direction, "DIRECTION_", "whether a bigger or a smaller value is worse",
        "--direction")] = "higher_is_worse",
    owner: Annotated[str, typer.Option(help="who maintains it (its faults go to them)")] = "",
    deadband: Annotated[float | None, typer.Option(
        help="hysteresis per limit, in its unit")] = None,
    on_delay: Annotated[str | None, typer.Option(
        metavar="DURATION", help="raise only after this long past a limit, e.g. 2m")] = None,
    off_delay: Annotated[str | None, typer.Option(
        metavar="DURATION", help="clear only after this long below, e.g. 15m")] = None,
    rate: Annotated[list[str] | None, typer.Option(
        metavar="PER_HOUR:LEVEL", help="a level from how fast it worsens, e.g. 30:orange "
        "(repeatable)")] = None,
    rate_window: Annotated[str | None, typer.Option(
        metavar="DURATION", help="the span a rate is measured over (e.g. 1h)")] = None,
    expected_interval: Annotated[str | None, typer.Option(
        metavar="DURATION", help="silent longer than this: a stale-data fault (e.g. 10m)")
    ] = None,
    valid_range: Annotated[tuple[float, float] | None, typer.Option(
        metavar="MIN MAX", help="physically possible values; outside is bad quality")] = None,
    new_names: Annotated[bool, typer.Option("--new-names", help=choices.NEW_NAMES_HELP)] = False,
) -> None:
    blue, yellow, orange, red = thresholds
    rules = cli_alarms.rules(deadband=deadband, on_delay=on_delay, off_delay=off_delay,
                             rates=rate or [], rate_window=rate_window,
                             expected_interval=expected_interval, valid_range=valid_range)
    sensor = _stub().RegisterSensor(pb.RegisterSensorRequest(
        id=id, kind=kind, hazard=hazard, location=common_pb2.GeoPoint(lat=lat, lon=lon),
        grid_cell=cell, unit_of_measure=unit,
        direction=choices.enum_value(pb.Direction, "DIRECTION_", direction),  # type: ignore[arg-type]
        thresholds=pb.Thresholds(blue=blue, yellow=yellow, orange=orange, red=red),
        owner=owner, rules=rules, new_names=new_names)).sensor
    render.show(sensor, lambda: sensors_table([sensor]))


@app.command(help="List sensors, every page: the worst level first.")
def sensors(kind: Annotated[str, typer.Option(help="only sensors of this kind")] = "",
            limit: Limit = 0) -> None:
    def fetch(token: str) -> tuple[Sequence[pb.Sensor], str]:
        answer = _stub().ListSensors(pb.ListSensorsRequest(page=render.page(token), kind=kind))
        return answer.sensors, answer.next_page_token

    render.show_list(render.pages(fetch, "sensors", limit), sensors_table, order=sensor_order)


@app.command(help="Show one sensor.")
def sensor(id: Annotated[str, typer.Argument(help="the sensor's id")]) -> None:
    found = _stub().GetSensor(pb.GetSensorRequest(id=id)).sensor
    render.show(found, lambda: sensors_table([found]))


@app.command(help="Send one reading, as a gateway would (a negative value is a value: "
                  "`read rain-17 -5`).",
             context_settings={"ignore_unknown_options": True})
def read(
    sensor: Annotated[str, typer.Argument(help="the sensor's id")],
    value: Annotated[float, typer.Argument(help="the value, in the sensor's unit")],
    at: At = None,
) -> None:
    reading = pb.Reading(sensor_id=sensor, value=value)
    if at:
        reading.measured_at.CopyFrom(times.timestamp(at))
    answer = _stub().IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[reading]))
    render.show(answer, lambda: warnings_table(answer.warnings) if answer.warnings else
                f"accepted {answer.accepted}; no warning changed")


@app.command(help="List warnings, every page: active first, then the worst colour.")
def warnings(
    status: Annotated[str | None, choices.enum_option(
        pb.WarningStatus, "WARNING_STATUS_", "only warnings in this status", "--status")
    ] = None,
    hazard: Hazard = "", limit: Limit = 0,
) -> None:
    def fetch(token: str) -> tuple[Sequence[pb.Warning], str]:
        answer = _stub().ListWarnings(pb.ListWarningsRequest(
            page=render.page(token), hazard=hazard,
            status=choices.enum_value(pb.WarningStatus, "WARNING_STATUS_", status)))  # type: ignore[arg-type]
        return answer.warnings, answer.next_page_token

    render.show_list(render.pages(fetch, "warnings", limit), warnings_table, order=warning_order)


@app.command(help="Show one warning.")
def warning(id: Annotated[str, typer.Argument(help="the warning's id")]) -> None:
    found = _stub().GetWarning(pb.GetWarningRequest(id=id)).warning
    render.show(found, lambda: warnings_table([found]))


@app.command(help="Acknowledge a warning (stops its escalation chain).")
def ack(id: Annotated[str, typer.Argument(help="the warning's id")], at: At = None) -> None:
    request = pb.AcknowledgeWarningRequest(id=id)
    if at:
        request.occurred_at.CopyFrom(times.timestamp(at))
    w = _stub().AcknowledgeWarning(request).warning
    render.show(w, lambda: warnings_table([w]))


@app.command("load-grid", help="Load the city's grid: districts and H3 cells (TOML).")
def load_grid(file: Annotated[str, typer.Argument(help="the grid file, e.g. "
                                                  "grids/xuhui.toml")]) -> None:
    try:
        request = grid.read_grid_file(file)
    except grid.GridFileError as error:
        errors.fail(str(error))
    # A call takes at most 1,000 cells (the edge's bound on a list): a city's grid goes in
    # parts, the districts with the first; each part is all or nothing.
    answer = pb.LoadGridResponse()
    cells = list(request.cells)
    with render.progress("loading cells", len(cells)) as advance:
        for start in range(0, max(len(cells), 1), REPEATED_DEFAULT):
            part = pb.LoadGridRequest(districts=request.districts if start == 0 else [],
                                      cells=cells[start:start + REPEATED_DEFAULT])
            if start == 0 and request.HasField("city"):
                part.city.CopyFrom(request.city)
            done = _stub().LoadGrid(part)
            answer.districts_changed += done.districts_changed
            answer.cells_changed += done.cells_changed
            answer.resolution = done.resolution
            advance(len(part.cells))

    def people() -> Table:
        grid_ = render.table("districts", "cells", "changed districts", "changed cells",
                             "resolution")
        render.add_row(grid_, len(request.districts), len(request.cells),
                       answer.districts_changed, answer.cells_changed, answer.resolution)
        return grid_
    render.show(answer, people)


@app.command(help="Show a grid cell: its district, officer and assets (give the cell, or "
                  "--lat and --lon).")
def cell(
    cell: Annotated[str, typer.Argument(help="H3 cell index")] = "",
    lat: Annotated[float | None, typer.Option(help="latitude of a place in the cell")] = None,
    lon: Annotated[float | None, typer.Option(help="longitude of a place in the cell")
                   ] = None,
) -> None:
    request = pb.GetCellRequest(cell=cell)
    if lat is not None or lon is not None:
        request.location.CopyFrom(common_pb2.GeoPoint(lat=lat or 0.0, lon=lon or 0.0))
    found = _stub().GetCell(request).cell
    render.show(found, lambda: render.describe(found))


@app.command(help="Confirmed / (confirmed + false) warnings per sensor, hazard and cell.")
def precision(
    sensor: Annotated[str, typer.Option(help="only this sensor")] = "",
    hazard: Hazard = "",
    cell: Annotated[str, typer.Option(help="only this grid cell")] = "",
) -> None:
    answer = _stub().GetPrecision(pb.GetPrecisionRequest(sensor_id=sensor, hazard=hazard,
                                                          grid_cell=cell))

    def people() -> Table:
        grid_ = render.table("by", "key", "confirmed", "false alarms", "precision")
        rows = [("all", answer.overall), *(("sensor", p) for p in answer.by_sensor),
                *(("hazard", p) for p in answer.by_hazard),
                *(("cell", p) for p in answer.by_cell)]
        for by, p in rows:
            render.add_row(grid_, by, p.key or "-", p.confirmed, p.false_alarms,
                           f"{p.precision:.0%}" if p.HasField("precision") else "-")
        return grid_
    render.show(answer, people)


WARNINGS = live.View(
    "warnings not cleared", lambda m: m.warning, lambda w: w.id,
    lambda w: w.status == pb.WARNING_STATUS_CLEARED, warnings_table, warning_order,
    lambda w: f"{w.id} {choices.enum_label(common_pb2.WarningLevel, w.level, 'WARNING_LEVEL_')} "
              f"{choices.enum_label(pb.WarningStatus, w.status, 'WARNING_STATUS_')}")


@app.command(help="A live view for a duty desk: the warnings not cleared, by colour, "
                  "changing in place until Ctrl-C; --ndjson: the stream's messages, one a "
                  "line (a snapshot, `caughtUp`, then each change).")
def watch(hazard: Hazard = "") -> None:
    live.watch(WARNINGS, lambda: _stub().WatchWarnings(pb.WatchWarningsRequest(hazard=hazard)))


cli_alarms.add_commands(app, _stub)
cli_alerts.add_commands(app, _stub)
cli_rosters.add_commands(app, _stub)


def main(argv: Sequence[str] | None = None) -> None:
    run(app, "monitor", argv)
