"""lifeline-monitor: sensors, readings and warnings, for duty officers and gateways."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import grpc
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.validation import REPEATED_DEFAULT

from lifeline_monitor import cli_alarms, cli_alerts, grid

DIRECTIONS = clikit.enum_choice(pb.Direction, "DIRECTION_")
STATUSES = clikit.enum_choice(pb.WarningStatus, "WARNING_STATUS_")


def _level(level: int) -> str:
    return common_pb2.WarningLevel.Name(level).removeprefix("WARNING_LEVEL_")  # type: ignore[arg-type]


def _stub(channel: grpc.Channel) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channel)


def _sensors(sensors: Sequence[pb.Sensor]) -> clikit.Table:
    return clikit.Table(
        ["id", "kind", "hazard", "cell", "level", "thresholds (b/y/o/r)", "unit"],
        [[s.id, s.kind, s.hazard, s.grid_cell, _level(s.level),
          f"{s.thresholds.blue:g}/{s.thresholds.yellow:g}/{s.thresholds.orange:g}/"
          f"{s.thresholds.red:g}", s.unit_of_measure] for s in sensors])


def _warnings(warnings: Sequence[pb.Warning]) -> clikit.Table:
    return clikit.Table(
        ["id", "level", "status", "sensors", "raised", "updated"],
        [[w.id, _level(w.level), pb.WarningStatus.Name(w.status).removeprefix("WARNING_STATUS_"),
          ",".join(sorted(w.sensor_levels)), clikit.when(w.raised_at), clikit.when(w.updated_at)]
         for w in warnings])


def register(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    blue, yellow, orange, red = args.thresholds
    sensor = _stub(channel).RegisterSensor(pb.RegisterSensorRequest(
        id=args.id, kind=args.kind, hazard=args.hazard,
        location=common_pb2.GeoPoint(lat=args.lat, lon=args.lon), grid_cell=args.cell or "",
        unit_of_measure=args.unit, direction=DIRECTIONS[args.direction],  # type: ignore[arg-type]
        thresholds=pb.Thresholds(blue=blue, yellow=yellow, orange=orange, red=red),
        owner=args.owner, rules=cli_alarms.rules_from(args))).sensor
    return sensor if args.json else _sensors([sensor])


def sensors(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _sensors(_stub(channel).ListSensors(pb.ListSensorsRequest(kind=args.kind)).sensors)


def sensor(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).GetSensor(pb.GetSensorRequest(id=args.id)).sensor


def read(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    reading = pb.Reading(sensor_id=args.sensor, value=args.value)
    if args.at:
        reading.measured_at.CopyFrom(clikit.timestamp(args.at))
    answer = _stub(channel).IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[reading]))
    return answer if args.json else _warnings(answer.warnings)


def warnings(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _warnings(_stub(channel).ListWarnings(pb.ListWarningsRequest(
        status=STATUSES[args.status] if args.status else 0, hazard=args.hazard)).warnings)  # type: ignore[arg-type]


def warning(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).GetWarning(pb.GetWarningRequest(id=args.id)).warning


def ack(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    request = pb.AcknowledgeWarningRequest(id=args.id)
    if args.at:
        request.occurred_at.CopyFrom(clikit.timestamp(args.at))
    w = _stub(channel).AcknowledgeWarning(request).warning
    return w if args.json else _warnings([w])


def load_grid(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    try:
        request = grid.read_grid_file(args.file)
    except grid.GridFileError as error:
        raise SystemExit(f"lifeline-monitor: {error}") from None
    # A call takes at most 1,000 cells (the edge's bound on a list): a city's grid goes in
    # parts, the districts with the first; each part is all or nothing.
    answer = pb.LoadGridResponse()
    cells = list(request.cells)
    for start in range(0, max(len(cells), 1), REPEATED_DEFAULT):
        part = pb.LoadGridRequest(districts=request.districts if start == 0 else [],
                                  cells=cells[start:start + REPEATED_DEFAULT])
        done = _stub(channel).LoadGrid(part)
        answer.districts_changed += done.districts_changed
        answer.cells_changed += done.cells_changed
        answer.resolution = done.resolution
    return answer if args.json else clikit.Table(
        ["districts", "cells", "changed districts", "changed cells", "resolution"],
        [[len(request.districts), len(request.cells), answer.districts_changed,
          answer.cells_changed, answer.resolution]])


def cell(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    request = pb.GetCellRequest(cell=args.cell or "")
    if args.lat is not None or args.lon is not None:
        request.location.CopyFrom(common_pb2.GeoPoint(lat=args.lat or 0.0, lon=args.lon or 0.0))
    return _stub(channel).GetCell(request).cell


def precision(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _stub(channel).GetPrecision(pb.GetPrecisionRequest(
        sensor_id=args.sensor, hazard=args.hazard, grid_cell=args.cell))
    if args.json:
        return answer
    rows = [("all", answer.overall), *(("sensor", p) for p in answer.by_sensor),
            *(("hazard", p) for p in answer.by_hazard), *(("cell", p) for p in answer.by_cell)]
    return clikit.Table(
        ["by", "key", "confirmed", "false alarms", "precision"],
        [[by, p.key or "-", p.confirmed, p.false_alarms,
          f"{p.precision:.0%}" if p.HasField("precision") else "-"] for by, p in rows])


def main(argv: Sequence[str] | None = None) -> None:
    p, sub = clikit.parser("monitor", "Sensors, readings and graded warnings.")
    s = sub.add_parser("register", help="register a sensor with its thresholds")
    s.add_argument("id")
    s.add_argument("--kind", required=True, help="rainfall, water_level, gas, ...")
    s.add_argument("--hazard", required=True, help="urban_flooding, gas_leak, ...")
    s.add_argument("--lat", type=float, required=True)
    s.add_argument("--lon", type=float, required=True)
    s.add_argument("--cell", help="grid cell (default: derived from the location)")
    s.add_argument("--unit", required=True, help="unit of measure, e.g. mm/h or m")
    s.add_argument("--thresholds", type=float, nargs=4, required=True,
                   metavar=("BLUE", "YELLOW", "ORANGE", "RED"))
    s.add_argument("--direction", choices=sorted(DIRECTIONS), default="higher_is_worse")
    cli_alarms.add_rule_flags(s)
    s = sub.add_parser("sensors", help="list sensors")
    s.add_argument("--kind", default="")
    sub.add_parser("sensor", help="show one sensor").add_argument("id")
    s = sub.add_parser("read", help="send one reading (as a gateway would)")
    s.add_argument("sensor")
    s.add_argument("value", type=float)
    s.add_argument("--at", help="when it was measured (ISO-8601, default now)")
    s = sub.add_parser("warnings", help="list warnings")
    s.add_argument("--status", choices=sorted(STATUSES))
    s.add_argument("--hazard", default="")
    sub.add_parser("warning", help="show one warning").add_argument("id")
    s = sub.add_parser("ack", help="acknowledge a warning (stops its escalation chain)")
    s.add_argument("id")
    s.add_argument("--at", help="when it was acknowledged (ISO-8601, default now)")
    s = sub.add_parser("load-grid", help="load the city's grid: districts and H3 cells (TOML)")
    s.add_argument("file")
    s = sub.add_parser("precision", help="confirmed / (confirmed + false) warnings per sensor, "
                                         "hazard and cell")
    s.add_argument("--sensor", default="")
    s.add_argument("--hazard", default="")
    s.add_argument("--cell", default="")
    s = sub.add_parser("cell", help="show a grid cell: its district, officer and assets")
    s.add_argument("cell", nargs="?", help="H3 cell index (or give --lat and --lon)")
    s.add_argument("--lat", type=float)
    s.add_argument("--lon", type=float)
    commands: dict[str, clikit.Command] = {
        "register": register, "sensors": sensors, "sensor": sensor, "read": read,
        "warnings": warnings, "warning": warning, "ack": ack, "load-grid": load_grid,
        "cell": cell, "precision": precision, **cli_alarms.add_commands(sub),
        **cli_alerts.add_commands(sub)}
    clikit.run("monitor", p, commands, _serve, argv)


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_monitor.bootstrap import build

    serve_forever("monitor", build)
