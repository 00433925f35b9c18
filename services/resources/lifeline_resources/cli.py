"""lifeline-resources: the fleet of response units, for duty officers and crews."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import grpc
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc

from lifeline_resources import cli_depots, cli_fleet
from lifeline_resources.domain import status_name

STATUSES = clikit.enum_choice(common_pb2.UnitStatus, "UNIT_STATUS_")


def _stub(channel: grpc.Channel) -> resources_pb2_grpc.ResourcesServiceStub:
    return resources_pb2_grpc.ResourcesServiceStub(channel)


def _units(units: Sequence[pb.Unit]) -> clikit.Table:
    return clikit.Table(
        ["id", "kind", "department", "status", "incident", "since", "home"],
        [[u.id, u.kind, u.department, status_name(u.status), u.incident_id,
          clikit.when(u.status_since), f"{u.home.lat:.5f},{u.home.lon:.5f}"] for u in units])


def register(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    unit = _stub(channel).RegisterUnit(pb.RegisterUnitRequest(
        id=args.id, kind=args.kind, department=args.department,
        home=common_pb2.GeoPoint(lat=args.lat, lon=args.lon), capabilities=args.capability,
        crew_size=args.crew)).unit
    return unit if args.json else _units([unit])


def units(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _units(_stub(channel).ListUnits(pb.ListUnitsRequest(
        kind=args.kind, status=STATUSES[args.status] if args.status else 0)).units)  # type: ignore[arg-type]


def unit(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).GetUnit(pb.GetUnitRequest(id=args.id)).unit


def status(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    request = pb.UpdateUnitStatusRequest(id=args.id, status=STATUSES[args.status])  # type: ignore[arg-type]
    if args.at:
        request.occurred_at.CopyFrom(clikit.timestamp(args.at))
    u = _stub(channel).UpdateUnitStatus(request).unit
    return u if args.json else _units([u])


def main(argv: Sequence[str] | None = None) -> None:
    p, sub = clikit.parser("resources", "Response units: where they are, whom they serve.")
    s = sub.add_parser("register", help="register a unit at its home station")
    s.add_argument("id")
    s.add_argument("--kind", required=True,
                   help="fire_engine, ambulance, police_car, rescue_team, pump_truck, ...")
    s.add_argument("--department", required=True, help="fire, medical, police, water, ...")
    s.add_argument("--lat", type=float, required=True, help="latitude of its home station")
    s.add_argument("--lon", type=float, required=True, help="longitude of its home station")
    s.add_argument("--capability", action="append", default=[], metavar="KIND",
                   help="a further kind it counts for (repeatable), e.g. rescue_team")
    s.add_argument("--crew", type=int, default=0, help="crew size")
    s = sub.add_parser("units", help="list units")
    s.add_argument("--kind", default="")
    s.add_argument("--status", choices=sorted(STATUSES))
    sub.add_parser("unit", help="show one unit").add_argument("id")
    s = sub.add_parser("status", help="report a unit's status")
    s.add_argument("id")
    s.add_argument("status", choices=sorted(set(STATUSES) - {"assigned"}))
    s.add_argument("--at", help="when it happened (ISO-8601, default now)")
    cli_depots.add_parsers(sub)
    commands: dict[str, clikit.Command] = {"register": register, "units": units, "unit": unit,
                                           "status": status, **cli_depots.COMMANDS,
                                           **cli_fleet.add_parsers(sub)}
    clikit.run("resources", p, commands, _serve, argv)


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_resources.bootstrap import build

    serve_forever("resources", build)
