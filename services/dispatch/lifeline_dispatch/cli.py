"""lifeline-dispatch: incidents from report to closure, for duty officers."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import grpc
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.dispatch.v1 import dispatch_pb2 as pb
from lifeline.dispatch.v1 import dispatch_pb2_grpc
from lifeline.incident.model import state_name
from lifeline.incident.v1 import incident_pb2

CATEGORIES = clikit.enum_choice(incident_pb2.Category, "CATEGORY_")
GRADES = clikit.enum_choice(incident_pb2.Grade, "GRADE_")
STATES = clikit.enum_choice(incident_pb2.IncidentState, "INCIDENT_STATE_")
STEPS = {  # CLI command -> (RPC name, help)
    "dismiss": ("DismissIncident", "dismiss an incident still in WARNING as a false alarm"),
    "contain": ("MarkContained", "mark an incident contained"),
    "recover": ("StartRecovery", "start recovery of a contained incident"),
    "recovered": ("CompleteRecovery", "mark recovery complete"),
    "close": ("CloseIncident", "close a recovered incident (releases its units)"),
}


def _stub(channel: grpc.Channel) -> dispatch_pb2_grpc.DispatchServiceStub:
    return dispatch_pb2_grpc.DispatchServiceStub(channel)


def _grade(grade: int) -> str:
    return incident_pb2.Grade.Name(grade).removeprefix("GRADE_") if grade else ""  # type: ignore[arg-type]


def _incidents(incidents: Sequence[incident_pb2.Incident]) -> clikit.Table:
    return clikit.Table(
        ["id", "state", "hazard", "grade", "units", "opened", "updated"],
        [[i.id, state_name(i.state), i.hazard_type or i.hazard, _grade(i.grade),
          sum(1 for u in i.units if not u.released), clikit.when(i.opened_at),
          clikit.when(i.updated_at)] for i in incidents])


def _action(args: argparse.Namespace) -> pb.Action:
    action = pb.Action(reason=args.reason or "")
    if args.at:
        action.occurred_at.CopyFrom(clikit.timestamp(args.at))
    return action


def _show(args: argparse.Namespace, incident: incident_pb2.Incident) -> Any:
    return incident if args.json else _incidents([incident])


def report(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).ReportIncident(pb.ReportIncidentRequest(
        hazard=args.hazard, location=common_pb2.GeoPoint(lat=args.lat, lon=args.lon),
        description=args.description, reporter=args.reporter or "",
        action=_action(args))).incident)


def declare(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).DeclareIncident(pb.DeclareIncidentRequest(
        incident_id=args.incident, category=CATEGORIES[args.category],  # type: ignore[arg-type]
        hazard_type=args.type, grade=GRADES[args.grade], action=_action(args))).incident)  # type: ignore[arg-type]


def step(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    rpc = getattr(_stub(channel), STEPS[args.command][0])
    return _show(args, rpc(pb.IncidentStepRequest(incident_id=args.incident,
                                                  action=_action(args))).incident)


def incident(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).GetIncident(pb.GetIncidentRequest(incident_id=args.incident)).incident


def incidents(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _incidents(_stub(channel).ListIncidents(pb.ListIncidentsRequest(
        state=STATES[args.state] if args.state else 0)).incidents)  # type: ignore[arg-type]


def _with_action(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--at", help="when it happened in the field (ISO-8601, default now)")
    parser.add_argument("--reason", help="why (recorded on the event)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    p, sub = clikit.parser("dispatch", "Incidents: report, declare, respond, recover, close.")
    s = _with_action(sub.add_parser("report", help="report an incident (a call, a patrol)"))
    s.add_argument("hazard")
    s.add_argument("--lat", type=float, required=True)
    s.add_argument("--lon", type=float, required=True)
    s.add_argument("--description", default="")
    s.add_argument("--reporter")
    s = _with_action(sub.add_parser("declare", help="declare an incident with its grade"))
    s.add_argument("incident")
    s.add_argument("--category", choices=sorted(CATEGORIES), required=True)
    s.add_argument("--type", required=True, help="hazard type, e.g. urban_flooding")
    s.add_argument("--grade", choices=["i", "ii", "iii", "iv"], required=True)
    for name, (_rpc, text) in STEPS.items():
        _with_action(sub.add_parser(name, help=text)).add_argument("incident")
    sub.add_parser("incident", help="show one incident").add_argument("incident")
    s = sub.add_parser("incidents", help="list incidents")
    s.add_argument("--state", choices=sorted(STATES))
    commands: dict[str, clikit.Command] = {"report": report, "declare": declare,
                                           "incident": incident, "incidents": incidents}
    commands.update(dict.fromkeys(STEPS, step))
    clikit.run("dispatch", p, commands, _serve, argv)


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_dispatch.bootstrap import build

    serve_forever("dispatch", build)
