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
TIERS = clikit.enum_choice(incident_pb2.OrderTier, "ORDER_TIER_")
TASK_KINDS = clikit.enum_choice(incident_pb2.RecoveryTaskKind, "RECOVERY_TASK_KIND_")
ORDER_STEPS = {  # CLI command -> (RPC name, help)
    "ack-order": ("AcknowledgeOrder", "acknowledge an order (the department received it)"),
    "progress": ("ReportOrderProgress", "report progress on an order"),
    "complete-order": ("CompleteOrder", "report an order done"),
    "verify-order": ("VerifyOrder", "verify a completed order (commander)"),
    "cancel-order": ("CancelOrder", "cancel an open order, with --reason (commander)"),
}
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


def _orders(orders: Sequence[incident_pb2.Order]) -> clikit.Table:
    return clikit.Table(
        ["order", "status", "overdue", "department", "unit", "life", "instruction",
         "ack by", "done by"],
        [[o.id, incident_pb2.OrderStatus.Name(o.status).removeprefix("ORDER_STATUS_"),
          ",".join(incident_pb2.Deadline.Name(d).removeprefix("DEADLINE_").lower()
                   for d in o.overdue), o.department, o.unit_id,
          "yes" if o.life_safety else "", o.instruction[:48], clikit.when(o.acknowledge_by),
          clikit.when(o.complete_by)] for o in orders])


def regrade(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).RegradeIncident(pb.RegradeIncidentRequest(
        incident_id=args.incident, grade=GRADES[args.grade], action=_action(args))).incident)  # type: ignore[arg-type]


def handover(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).HandOverCommand(pb.HandOverCommandRequest(
        incident_id=args.incident, to_commander=args.to, action=_action(args))).incident)


def release(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).ReleaseUnits(pb.ReleaseUnitsRequest(
        incident_id=args.incident, unit_ids=args.units, action=_action(args))).incident)


def order(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    incident = _stub(channel).IssueOrder(pb.IssueOrderRequest(
        incident_id=args.incident, department=args.department, unit_id=args.unit or "",
        tier=TIERS[args.tier], instruction=args.instruction, life_safety=args.life_safety,  # type: ignore[arg-type]
        acknowledge_within_minutes=args.ack, complete_within_minutes=args.complete,
        action=_action(args))).incident
    return incident if args.json else _orders(incident.orders[-1:])


def order_step(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    stub = _stub(channel)
    if args.command == "progress":
        incident = stub.ReportOrderProgress(pb.ReportOrderProgressRequest(
            incident_id=args.incident, order_id=args.order, note=args.note or "",
            percent=args.percent, action=_action(args))).incident
    else:
        rpc = getattr(stub, ORDER_STEPS[args.command][0])
        incident = rpc(pb.OrderStepRequest(incident_id=args.incident, order_id=args.order,
                                           action=_action(args))).incident
    return incident if args.json else _orders([o for o in incident.orders if o.id == args.order])


def orders(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _orders(_stub(channel).ListOrders(
        pb.ListOrdersRequest(incident_id=args.incident)).orders)


def situation(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).ReportSituation(pb.ReportSituationRequest(
        incident_id=args.incident, dead=args.dead, injured=args.injured, missing=args.missing,
        affected=args.affected, evacuated=args.evacuated, area_km2=args.area,
        text=args.text or "", action=_action(args))).incident)


def task(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).AddRecoveryTask(pb.AddRecoveryTaskRequest(
        incident_id=args.incident, kind=TASK_KINDS[args.kind], owner=args.owner,  # type: ignore[arg-type]
        description=args.description, action=_action(args))).incident)


def task_done(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).CompleteRecoveryTask(pb.CompleteRecoveryTaskRequest(
        incident_id=args.incident, task_id=args.task, action=_action(args))).incident)


def reviewed(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _show(args, _stub(channel).MarkReviewed(pb.MarkReviewedRequest(
        incident_id=args.incident, summary=args.summary, action=_action(args))).incident)


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
    s = _with_action(sub.add_parser("regrade", help="escalate or de-escalate (needs --reason)"))
    s.add_argument("incident")
    s.add_argument("--grade", choices=["i", "ii", "iii", "iv"], required=True)
    s = _with_action(sub.add_parser("handover", help="hand command to another officer"))
    s.add_argument("incident")
    s.add_argument("to")
    s = _with_action(sub.add_parser("release", help="release units (all deployed if none)"))
    s.add_argument("incident")
    s.add_argument("units", nargs="*")
    s = _with_action(sub.add_parser("order", help="issue an order (commander)"))
    s.add_argument("incident")
    s.add_argument("--department", required=True)
    s.add_argument("--instruction", required=True)
    s.add_argument("--unit", help="the unit the order is for")
    s.add_argument("--tier", choices=sorted(TIERS), default="district")
    s.add_argument("--life-safety", action="store_true")
    s.add_argument("--ack", type=int, default=5, help="minutes to acknowledge (default 5)")
    s.add_argument("--complete", type=int, default=60, help="minutes to complete (default 60)")
    for name, (_rpc, text) in ORDER_STEPS.items():
        s = _with_action(sub.add_parser(name, help=text))
        s.add_argument("incident")
        s.add_argument("order")
        if name == "progress":
            s.add_argument("--percent", type=int, default=0)
            s.add_argument("--note")
    sub.add_parser("orders", help="an incident's orders, overdue first").add_argument("incident")
    s = _with_action(sub.add_parser("situation", help="report casualties and scale"))
    s.add_argument("incident")
    for number in ("dead", "injured", "missing", "affected", "evacuated"):
        s.add_argument(f"--{number}", type=int, default=0)
    s.add_argument("--area", type=float, default=0.0, help="affected area in km²")
    s.add_argument("--text")
    s = _with_action(sub.add_parser("task", help="add a recovery task"))
    s.add_argument("incident")
    s.add_argument("--kind", choices=sorted(TASK_KINDS), required=True)
    s.add_argument("--owner", required=True)
    s.add_argument("--description", required=True)
    s = _with_action(sub.add_parser("task-done", help="complete a recovery task"))
    s.add_argument("incident")
    s.add_argument("task")
    s = _with_action(sub.add_parser("reviewed", help="mark a closed incident reviewed"))
    s.add_argument("incident")
    s.add_argument("--summary", required=True)
    sub.add_parser("incident", help="show one incident").add_argument("incident")
    s = sub.add_parser("incidents", help="list incidents")
    s.add_argument("--state", choices=sorted(STATES))
    commands: dict[str, clikit.Command] = {"report": report, "declare": declare,
                                           "incident": incident, "incidents": incidents}
    commands.update(dict.fromkeys(STEPS, step))
    commands.update(dict.fromkeys(ORDER_STEPS, order_step))
    commands.update({"regrade": regrade, "handover": handover, "release": release,
                     "order": order, "orders": orders, "situation": situation, "task": task,
                     "task-done": task_done, "reviewed": reviewed})
    clikit.run("dispatch", p, commands, _serve, argv)


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_dispatch.bootstrap import build

    serve_forever("dispatch", build)
