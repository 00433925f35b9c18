"""lifeline-resources depot ... and use ...: depots and their stock, for duty officers."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

import grpc
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc

MATERIAL = re.compile(r"^(?P<name>[^=]+)=(?P<quantity>\d+):(?P<unit>.+)$")
USES = clikit.enum_choice(pb.MaterialUse, "MATERIAL_USE_")
ACTIONS = ("register", "list", "show", "restock")


def material(text: str) -> pb.Material:
    """NAME=QUANTITY:UNIT, e.g. sandbags=500:bag."""
    found = MATERIAL.match(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=QUANTITY:UNIT, e.g. "
                                         "sandbags=500:bag")
    return pb.Material(name=found["name"], quantity=int(found["quantity"]), unit=found["unit"])


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("depot", help="depots of materials: register, list, show, restock")
    s.add_argument("action", choices=ACTIONS)
    s.add_argument("id", nargs="?", help="the depot (all but list)")
    s.add_argument("materials", nargs="*", type=material, metavar="NAME=QUANTITY:UNIT",
                   help="opening stock (register) or what was delivered (restock)")
    s.add_argument("--name", default="", help="register: what people call it")
    s.add_argument("--department", default="",
                   help="register: the department that runs it; list: only its depots")
    s.add_argument("--lat", type=float, help="register: where it is")
    s.add_argument("--lon", type=float)
    s.add_argument("--at", help="restock: when it was delivered (ISO-8601, default now)")
    s = sub.add_parser("use", help="report materials an incident consumed or returned")
    s.add_argument("depot")
    s.add_argument("incident")
    s.add_argument("use", choices=sorted(USES))
    s.add_argument("materials", nargs="+", type=material, metavar="NAME=QUANTITY:UNIT")
    s.add_argument("--at", help="when (ISO-8601, default now)")


def _stub(channel: grpc.Channel) -> resources_pb2_grpc.ResourcesServiceStub:
    return resources_pb2_grpc.ResourcesServiceStub(channel)


def _depots(depots: Sequence[pb.Depot]) -> clikit.Table:
    return clikit.Table(
        ["depot", "department", "position", "material", "unit", "available", "reserved",
         "consumed"],
        [[d.id, d.department, f"{d.position.lat:.5f},{d.position.lon:.5f}", s.material,
          s.unit, s.available, s.reserved, s.consumed] for d in depots for s in d.stock]
        + [[d.id, d.department, f"{d.position.lat:.5f},{d.position.lon:.5f}", "", "", "",
            "", ""] for d in depots if not d.stock])


def _shown(depot: pb.Depot, as_json: bool) -> Any:
    return depot if as_json else _depots([depot])


def depot(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    if args.action == "list":
        found: list[pb.Depot] = []
        token = ""
        while True:
            page = _stub(channel).ListDepots(pb.ListDepotsRequest(
                department=args.department, page=common_pb2.PageRequest(page_token=token)))
            found.extend(page.depots)
            token = page.next_page_token
            if not token:
                return pb.ListDepotsResponse(depots=found) if args.json else _depots(found)
    if not args.id:
        raise SystemExit(f"lifeline-resources: depot {args.action} needs the depot's id")
    if args.action == "show":
        return _stub(channel).GetDepot(pb.GetDepotRequest(id=args.id)).depot
    if args.action == "register":
        if args.lat is None or args.lon is None or not args.department:
            raise SystemExit("lifeline-resources: depot register needs --department, --lat "
                             "and --lon")
        return _shown(_stub(channel).RegisterDepot(pb.RegisterDepotRequest(
            id=args.id, name=args.name, department=args.department,
            position=common_pb2.GeoPoint(lat=args.lat, lon=args.lon),
            stock=args.materials)).depot, args.json)
    request = pb.RestockDepotRequest(id=args.id, materials=args.materials)
    if args.at:
        request.occurred_at.CopyFrom(clikit.timestamp(args.at))
    return _shown(_stub(channel).RestockDepot(request).depot, args.json)


def use(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    request = pb.ReportMaterialUseRequest(depot_id=args.depot, incident_id=args.incident,
                                          use=USES[args.use], materials=args.materials)  # type: ignore[arg-type]
    if args.at:
        request.occurred_at.CopyFrom(clikit.timestamp(args.at))
    return _shown(_stub(channel).ReportMaterialUse(request).depot, args.json)


COMMANDS: dict[str, clikit.Command] = {"depot": depot, "use": use}
