"""Incidents, orders and histories drawn for people: the tables dispatch's and review's CLIs
and the demo print, sorted the way a duty officer reads them (active and worst first)."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from rich.table import Table
from rich.text import Text

from lifeline.cli.choices import enum_label
from lifeline.cli.render import add_row, cell, table
from lifeline.cli.times import times_caption, when
from lifeline.events import event_of, from_timestamp, meta_of
from lifeline.incident.phases import state_name
from lifeline.incident.text import describe, duration
from lifeline.incident.v1 import incident_pb2 as pb
from lifeline.review.v1 import review_pb2

#: States in which an incident still needs people, in the order a duty desk reads them.
ACTIVE_ORDER = {pb.INCIDENT_STATE_RESPONDING: 0, pb.INCIDENT_STATE_DECLARED: 1,
                pb.INCIDENT_STATE_WARNING: 2, pb.INCIDENT_STATE_CONTAINED: 3,
                pb.INCIDENT_STATE_RECOVERING: 4, pb.INCIDENT_STATE_RECOVERED: 5}
OPEN_ORDERS = (pb.ORDER_STATUS_ISSUED, pb.ORDER_STATUS_ACKNOWLEDGED,
               pb.ORDER_STATUS_IN_PROGRESS)
#: An overdue order's missed deadlines, as the ACK BY and DONE BY columns name them.
DEADLINES = {pb.DEADLINE_ACKNOWLEDGEMENT: "ack", pb.DEADLINE_COMPLETION: "done"}
STATE_STYLES = {"WARNING": "yellow", "DECLARED": "bold", "RESPONDING": "bold red",
                "CONTAINED": "dark_orange", "RECOVERING": "cyan", "RECOVERED": "green",
                "CLOSED": "dim", "DISMISSED": "dim"}


def grade(value: int) -> str:
    return enum_label(pb.Grade, value, "GRADE_")


def overdue_orders(incident: pb.Incident) -> int:
    return sum(1 for o in incident.orders if o.overdue and o.status in OPEN_ORDERS)


def incident_order(incident: pb.Incident) -> tuple[Any, ...]:
    """Active before closed; then grade I (worst) before IV; overdue orders first; the most
    recently changed first."""
    return (ACTIVE_ORDER.get(incident.state, 9), incident.grade or 9,
            -overdue_orders(incident), -incident.updated_at.seconds, incident.id)


def incidents_table(incidents: Sequence[pb.Incident], title: str | None = None) -> Table:
    grid = table("id", "state", "hazard", "grade", "units", "orders open", "overdue",
                 "opened", "updated", caption=times_caption())
    grid.title = title
    for i in incidents:
        state = state_name(i.state)
        late = overdue_orders(i)
        add_row(grid, i.id, cell(state, STATE_STYLES.get(state)), i.hazard_type or i.hazard,
                cell(grade(i.grade), "bold red" if i.grade in (pb.GRADE_I, pb.GRADE_II)
                     else None),
                sum(1 for u in i.units if not u.released),
                sum(1 for o in i.orders if o.status in OPEN_ORDERS),
                cell(late or "", "bold white on red" if late else None),
                when(i.opened_at), when(i.updated_at))
    return grid


def order_order(order: pb.Order) -> tuple[Any, ...]:
    """Overdue first, then open before done, life-safety first, then by deadline."""
    open_ = order.status in OPEN_ORDERS
    return (not (order.overdue and open_), not open_, not order.life_safety,
            order.acknowledge_by.seconds if order.status == pb.ORDER_STATUS_ISSUED
            else order.complete_by.seconds, order.id)


def orders_table(orders: Sequence[pb.Order]) -> Table:
    grid = table("order", "status", "overdue", "department", "unit", "life", "instruction",
                 "ack by", "done by", caption=times_caption())
    for o in orders:
        late = ",".join(DEADLINES.get(d, "?") for d in o.overdue)
        live = o.status in OPEN_ORDERS
        add_row(grid, o.id, enum_label(pb.OrderStatus, o.status, "ORDER_STATUS_"),
                cell(late, "bold white on red" if late and live else "red" if late else None),
                o.department, o.unit_id, "yes" if o.life_safety else "", o.instruction,
                when(o.acknowledge_by), when(o.complete_by),
                style="dim" if not live else None)
    return grid


def replay_table(steps: Sequence[review_pb2.ReplayStep]) -> Table:
    """The replayed timeline: field time, what happened, who, and the state after it."""
    grid = table("#", "field time", "event", "what", "actor", "state after",
                 caption=f"field {times_caption()}")
    for step in steps:
        meta = meta_of(step.event)
        state = state_name(step.state.state)
        add_row(grid, meta.sequence, when(meta.occurred_at), event_of(step.event)[0],
                describe(step.event), meta.actor, cell(state, STATE_STYLES.get(state)))
    return grid


def history_table(events: Sequence[pb.IncidentEvent]) -> Table:
    grid = table("#", "field time", "event", "what", "actor",
                 caption=f"field {times_caption()}")
    for e in events:
        meta = meta_of(e)
        add_row(grid, meta.sequence, when(meta.occurred_at), event_of(e)[0], describe(e),
                meta.actor)
    return grid


def _seconds(value: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


def evaluation_table(e: review_pb2.Evaluation) -> Table:
    def has(field: str) -> Any:
        return getattr(e, field) if e.HasField(field) else None  # type: ignore[arg-type]

    met = e.response_time_met
    target = (cell(f"{e.response_time_target_minutes} min, " + ("met" if met else "missed"),
                   None if met else "bold red") if e.response_time_target_minutes else "-")
    grid = table("measure", "value")
    rows: list[list[Any]] = [
        ["final state", state_name(e.final_state)],
        ["warning -> declared", duration(has("warning_to_declared"))],
        ["declared -> first unit assigned", duration(has("declared_to_first_assignment"))],
        ["response time (declared -> first on scene)", duration(has("response_time"))],
        ["declared -> contained", duration(has("declared_to_contained"))],
        ["recovery duration", duration(has("recovery_duration"))],
        ["total duration", duration(has("total_duration"))],
        ["response-time target (plan)", target],
        ["declared -> first order", duration(has("declared_to_first_order"))],
        ["orders issued / overdue", cell(f"{e.orders_issued} / {e.orders_overdue}",
                                         "red" if e.orders_overdue else None)],
        ["order closure rate", f"{e.order_closure_rate:.0%}"],
        *[[f"acknowledgement latency, {d}", duration(_seconds(s))]
          for d, s in sorted(e.acknowledgement_seconds.items())],
        ["units assigned", e.units_assigned],
        ["units short", cell(e.units_short, "red" if e.units_short else None)],
        ["events", e.events],
    ]
    for row in rows:
        add_row(grid, *row)
    return grid


def is_overdue(deadline: Any, now: datetime | None = None) -> bool:
    return bool(deadline.seconds) and from_timestamp(deadline) <= (now or datetime.now(UTC))


def styled(text: str, style: str | None) -> Text:
    return cell(text, style)
