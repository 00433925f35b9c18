"""lifeline-dispatch: incidents from report to closure, for duty officers."""

from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from lifeline.cli import choices, connection, live, render, times, views
from lifeline.cli.app import run, service_app
from lifeline.common.v1 import common_pb2, names_pb2
from lifeline.dispatch.v1 import dispatch_pb2 as pb
from lifeline.dispatch.v1 import dispatch_pb2_grpc
from lifeline.incident.phases import state_name
from lifeline.incident.v1 import incident_pb2

app = service_app("dispatch", "Incidents: report, declare, respond, recover, close.")

ORDER_STEPS = {  # CLI command -> (RPC name, help)
    "ack-order": ("AcknowledgeOrder", "Acknowledge an order (the department received it)."),
    "complete-order": ("CompleteOrder", "Report an order done."),
    "verify-order": ("VerifyOrder", "Verify a completed order (commander)."),
    "cancel-order": ("CancelOrder", "Cancel an open order, giving --reason (commander)."),
}
STEPS = {  # CLI command -> (RPC name, help)
    "dismiss": ("DismissIncident", "Dismiss an incident still in WARNING as a false alarm."),
    "contain": ("MarkContained", "Mark an incident contained."),
    "recover": ("StartRecovery", "Start recovery of a contained incident."),
    "recovered": ("CompleteRecovery", "Mark recovery complete."),
    "close": ("CloseIncident", "Close a recovered incident. Refused while units are still "
                               "deployed or orders open: `release INCIDENT` sends the units "
                               "home, verify or cancel the orders first."),
}

Incident = Annotated[str, typer.Argument(metavar="INCIDENT", help="the incident's id")]
Order = Annotated[str, typer.Argument(metavar="ORDER", help="the order's id, e.g. O-1")]
At = Annotated[str | None, typer.Option(
    metavar="TIME", help="when it happened in the field (ISO-8601; without a zone, in the "
    "city's zone; default now)")]
Reason = Annotated[str, typer.Option(help="why (recorded on the event)")]
Grade = Annotated[str, choices.enum_option(incident_pb2.Grade, "GRADE_", "the grade (i is the "
                                           "most severe)", "--grade")]


def _stub() -> dispatch_pb2_grpc.DispatchServiceStub:
    return dispatch_pb2_grpc.DispatchServiceStub(connection.connect("dispatch"))


HAZARDS = choices.known_names(_stub, names_pb2.NAME_KIND_HAZARD)
DEPARTMENTS = choices.known_names(_stub, names_pb2.NAME_KIND_DEPARTMENT)


def _action(at: str | None, reason: str) -> pb.Action:
    action = pb.Action(reason=reason)
    if at:
        action.occurred_at.CopyFrom(times.timestamp(at))
    return action


def _show(answer: pb.IncidentResponse) -> None:
    render.show(answer.incident, lambda: views.incidents_table([answer.incident]))


def _show_orders(answer: pb.IncidentResponse, which: Callable[[incident_pb2.Incident],
                                                             Sequence[incident_pb2.Order]]
                 ) -> None:
    render.show(answer.incident, lambda: views.orders_table(which(answer.incident)))


@app.command(help="Report an incident (a call, a patrol): it opens in WARNING.")
def report(
    hazard: Annotated[str, typer.Argument(help="what happens, e.g. urban_flooding, gas_leak",
                                          autocompletion=HAZARDS)],
    lat: Annotated[float, typer.Option(help="latitude of the place (WGS84 degrees)")],
    lon: Annotated[float, typer.Option(help="longitude of the place (WGS84 degrees)")],
    description: Annotated[str, typer.Option(help="what the caller saw")] = "",
    reporter: Annotated[str, typer.Option(help="who reported it (default: you)")] = "",
    at: At = None, reason: Reason = "",
) -> None:
    _show(_stub().ReportIncident(pb.ReportIncidentRequest(
        hazard=hazard, location=common_pb2.GeoPoint(lat=lat, lon=lon),
        description=description, reporter=reporter, action=_action(at, reason))))


@app.command(help="Declare an incident with its category, type and grade: its plan comes "
                  "into force.")
def declare(
    incident: Incident,
    category: Annotated[str, choices.enum_option(incident_pb2.Category, "CATEGORY_",
                                                 "the kind of public emergency", "--category")],
    hazard_type: Annotated[str, typer.Option(
        "--type", help="hazard type, e.g. urban_flooding (its plan applies)",
        autocompletion=HAZARDS)],
    grade: Grade, at: At = None, reason: Reason = "",
) -> None:
    _show(_stub().DeclareIncident(pb.DeclareIncidentRequest(
        incident_id=incident,
        category=choices.enum_value(incident_pb2.Category, "CATEGORY_", category),  # type: ignore[arg-type]
        hazard_type=hazard_type, grade=choices.enum_value(incident_pb2.Grade, "GRADE_", grade),  # type: ignore[arg-type]
        action=_action(at, reason))))


def _step_command(name: str, rpc_name: str, text: str) -> None:
    def step(incident: Incident, at: At = None, reason: Reason = "") -> None:
        rpc = getattr(_stub(), rpc_name)
        _show(rpc(pb.IncidentStepRequest(incident_id=incident, action=_action(at, reason))))
    step.__name__ = name.replace("-", "_")
    app.command(name, help=text)(step)


for _name, (_rpc, _text) in STEPS.items():
    _step_command(_name, _rpc, _text)


@app.command(help="Escalate or de-escalate an incident's grade (needs --reason).")
def regrade(incident: Incident, grade: Grade, at: At = None, reason: Reason = "") -> None:
    _show(_stub().RegradeIncident(pb.RegradeIncidentRequest(
        incident_id=incident, grade=choices.enum_value(incident_pb2.Grade, "GRADE_", grade),  # type: ignore[arg-type]
        action=_action(at, reason))))


@app.command(help="Hand command of an incident to another officer.")
def handover(incident: Incident,
             to: Annotated[str, typer.Argument(help="the officer taking command")],
             at: At = None, reason: Reason = "") -> None:
    _show(_stub().HandOverCommand(pb.HandOverCommandRequest(
        incident_id=incident, to_commander=to, action=_action(at, reason))))


@app.command(help="Send units home from an incident (every deployed unit when none is "
                  "named).")
def release(incident: Incident,
            units: Annotated[list[str] | None, typer.Argument(
                help="the units to release (default: all deployed)")] = None,
            at: At = None, reason: Reason = "") -> None:
    _show(_stub().ReleaseUnits(pb.ReleaseUnitsRequest(
        incident_id=incident, unit_ids=units or [], action=_action(at, reason))))


@app.command(help="Issue an order to a department (commander).")
def order(
    incident: Incident,
    department: Annotated[str, typer.Option(help="the department that carries it out",
                                            autocompletion=DEPARTMENTS)],
    instruction: Annotated[str, typer.Option(help="what to do, in a sentence")],
    unit: Annotated[str, typer.Option(help="the unit the order is for (optional)")] = "",
    tier: Annotated[str, choices.enum_option(incident_pb2.OrderTier, "ORDER_TIER_",
                                             "who issues it", "--tier")] = "district",
    life_safety: Annotated[bool, typer.Option(
        "--life-safety", help="lives depend on it (shown first, escalated first)")] = False,
    ack: Annotated[int, typer.Option(help="minutes to acknowledge")] = 5,
    complete: Annotated[int, typer.Option(help="minutes to complete")] = 60,
    at: At = None, reason: Reason = "",
) -> None:
    _show_orders(_stub().IssueOrder(pb.IssueOrderRequest(
        incident_id=incident, department=department, unit_id=unit,
        tier=choices.enum_value(incident_pb2.OrderTier, "ORDER_TIER_", tier),  # type: ignore[arg-type]
        instruction=instruction, life_safety=life_safety, acknowledge_within_minutes=ack,
        complete_within_minutes=complete, action=_action(at, reason))),
        lambda i: i.orders[-1:])


def _order_step_command(name: str, rpc_name: str, text: str) -> None:
    def step(incident: Incident, order: Order, at: At = None, reason: Reason = "") -> None:
        rpc = getattr(_stub(), rpc_name)
        _show_orders(rpc(pb.OrderStepRequest(incident_id=incident, order_id=order,
                                             action=_action(at, reason))),
                     lambda i: [o for o in i.orders if o.id == order])
    step.__name__ = name.replace("-", "_")
    app.command(name, help=text)(step)


for _name, (_rpc, _text) in ORDER_STEPS.items():
    _order_step_command(_name, _rpc, _text)


@app.command(help="Report progress on an order.")
def progress(
    incident: Incident, order: Order,
    percent: Annotated[int, typer.Option(min=0, max=100, help="how much is done, 0-100")] = 0,
    note: Annotated[str, typer.Option(help="what was done or what holds it up")] = "",
    at: At = None, reason: Reason = "",
) -> None:
    _show_orders(_stub().ReportOrderProgress(pb.ReportOrderProgressRequest(
        incident_id=incident, order_id=order, note=note, percent=percent,
        action=_action(at, reason))), lambda i: [o for o in i.orders if o.id == order])


@app.command(help="An incident's orders: overdue first, then open, life-safety first.")
def orders(incident: Incident) -> None:
    listed = _stub().ListOrders(pb.ListOrdersRequest(incident_id=incident)).orders
    render.show_list(listed, views.orders_table, order=views.order_order)


@app.command(help="Report casualties and scale (each report replaces the last).")
def situation(
    incident: Incident,
    dead: Annotated[int, typer.Option(min=0, help="people dead")] = 0,
    injured: Annotated[int, typer.Option(min=0, help="people injured")] = 0,
    missing: Annotated[int, typer.Option(min=0, help="people missing")] = 0,
    affected: Annotated[int, typer.Option(min=0, help="people affected")] = 0,
    evacuated: Annotated[int, typer.Option(min=0, help="people evacuated")] = 0,
    area: Annotated[float, typer.Option(min=0, help="affected area in km²")] = 0.0,
    text: Annotated[str, typer.Option(help="the situation in words")] = "",
    at: At = None, reason: Reason = "",
) -> None:
    _show(_stub().ReportSituation(pb.ReportSituationRequest(
        incident_id=incident, dead=dead, injured=injured, missing=missing, affected=affected,
        evacuated=evacuated, area_km2=area, text=text, action=_action(at, reason))))


@app.command(help="Add a recovery task for a department or agency.")
def task(
    incident: Incident,
    kind: Annotated[str, choices.enum_option(incident_pb2.RecoveryTaskKind,
                                             "RECOVERY_TASK_KIND_", "what kind of work",
                                             "--kind")],
    owner: Annotated[str, typer.Option(help="who does it (a department or agency)",
                                       autocompletion=DEPARTMENTS)],
    description: Annotated[str, typer.Option(help="the work, in a sentence")],
    at: At = None, reason: Reason = "",
) -> None:
    _show(_stub().AddRecoveryTask(pb.AddRecoveryTaskRequest(
        incident_id=incident,
        kind=choices.enum_value(incident_pb2.RecoveryTaskKind, "RECOVERY_TASK_KIND_", kind),  # type: ignore[arg-type]
        owner=owner, description=description, action=_action(at, reason))))


@app.command("task-done", help="Complete a recovery task.")
def task_done(incident: Incident,
              task: Annotated[str, typer.Argument(help="the task's id, e.g. T-1")],
              at: At = None, reason: Reason = "") -> None:
    _show(_stub().CompleteRecoveryTask(pb.CompleteRecoveryTaskRequest(
        incident_id=incident, task_id=task, action=_action(at, reason))))


@app.command(help="Mark a closed incident reviewed, with the review's summary.")
def reviewed(incident: Incident,
             summary: Annotated[str, typer.Option(help="what the review found")],
             at: At = None, reason: Reason = "") -> None:
    _show(_stub().MarkReviewed(pb.MarkReviewedRequest(
        incident_id=incident, summary=summary, action=_action(at, reason))))


@app.command("incident", help="Show one incident.")
def show_incident(incident: Incident) -> None:
    found = _stub().GetIncident(pb.GetIncidentRequest(incident_id=incident)).incident
    render.show(found, lambda: _incident_in_full(found))


def _incident_in_full(i: incident_pb2.Incident) -> None:
    render.emit(views.incidents_table([i]))
    if i.orders:
        render.emit(views.orders_table(sorted(i.orders, key=views.order_order)))


@app.command(help="List incidents, every page: active first, then the worst grade, overdue "
                  "orders, the latest change.")
def incidents(
    state: Annotated[str | None, choices.enum_option(
        incident_pb2.IncidentState, "INCIDENT_STATE_", "only incidents in this state",
        "--state")] = None,
    limit: Annotated[int, typer.Option(min=0, help=render.LIMIT_HELP)] = 0,
) -> None:
    def fetch(token: str) -> tuple[Sequence[incident_pb2.Incident], str]:
        answer = _stub().ListIncidents(pb.ListIncidentsRequest(
            page=render.page(token),
            state=choices.enum_value(incident_pb2.IncidentState, "INCIDENT_STATE_", state)))  # type: ignore[arg-type]
        return answer.incidents, answer.next_page_token

    render.show_list(render.pages(fetch, "incidents", limit), views.incidents_table,
                     order=views.incident_order)



def _change(i: incident_pb2.Incident) -> str:
    late = views.overdue_orders(i)
    said = [i.id, state_name(i.state), i.hazard_type or i.hazard,
            f"grade {views.grade(i.grade)}" if i.grade else "",
            f"OVERDUE orders: {late}" if late else ""]
    return " ".join(part for part in said if part)


INCIDENTS = live.View(
    "active incidents", lambda m: m.incident, lambda i: i.id,
    lambda i: i.state in (incident_pb2.INCIDENT_STATE_CLOSED,
                          incident_pb2.INCIDENT_STATE_DISMISSED),
    views.incidents_table, views.incident_order, _change)


@app.command(help="A live view for a duty desk: the active incidents, changing in place "
                  "(overdue orders highlighted) until Ctrl-C; --ndjson: the stream's "
                  "messages, one a line (a snapshot, `caughtUp`, then each change).")
def watch() -> None:
    live.watch(INCIDENTS, lambda: _stub().WatchIncidents(pb.WatchIncidentsRequest()))


def main(argv: Sequence[str] | None = None) -> None:
    run(app, "dispatch", argv)
