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
        thresholds=pb.Thresholds(blue=blue, yellow=yellow, orange=orange, red=red))).sensor
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
    w = _stub(channel).AcknowledgeWarning(pb.AcknowledgeWarningRequest(id=args.id)).warning
    return w if args.json else _warnings([w])


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
    sub.add_parser("ack", help="acknowledge a warning").add_argument("id")
    commands: dict[str, clikit.Command] = {
        "register": register, "sensors": sensors, "sensor": sensor, "read": read,
        "warnings": warnings, "warning": warning, "ack": ack}
    clikit.run("monitor", p, commands, _serve, argv)


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_monitor.bootstrap import build

    serve_forever("monitor", build)
