"""lifeline-monitor's commands for what reaches people and agencies: `inbox --party P
[--follow]` (then `ack WARNING_ID`), `escalation WARNING_ID`, `cap WARNING_ID`,
`cap import FILE|-`, `cap list [--unplaced]`, `cap place` and `cap dismiss`."""

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from lifeline.cli import choices, errors, render, times
from lifeline.events import from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from rich.table import Table

COLUMNS = ("", "warning", "level", "where", "step", "channel", "notified", "ack by",
           "status", "delivery")
Stub = Callable[[], monitor_pb2_grpc.MonitorServiceStub]


def _late(n: pb.PartyNotification, now: datetime) -> bool:
    return (n.status == pb.NOTIFICATION_STATUS_WAITING and n.HasField("ack_deadline")
            and from_timestamp(n.ack_deadline) <= now)


def _row(n: pb.PartyNotification, now: datetime) -> list[Any]:
    late = _late(n, now)
    return [render.cell("OVERDUE" if late else "", "bold white on red" if late else None),
            n.warning_id, render.level_cell(n.level), n.cell_name or n.grid_cell,
            f"{n.step}" + (f" (round {n.round + 1})" if n.round else ""), n.channel,
            times.when(n.notified_at),
            times.when(n.ack_deadline) if n.HasField("ack_deadline") else "-",
            choices.enum_label(pb.NotificationStatus, n.status, "NOTIFICATION_STATUS_").lower()
            + (f" by {n.acknowledged_by}" if n.acknowledged_by else "")
            + (f" via {n.acknowledged_via}" if n.acknowledged_via else ""),
            deliveries(n)]


def deliveries(n: pb.PartyNotification) -> str:
    """The latest notification's tries, per channel in order: `webhook failed x3 (connection
    refused) -> email delivered`."""
    parts: list[str] = []
    failed: dict[str, tuple[int, str]] = {}
    for a in (a for a in n.deliveries if a.round == n.times_notified):
        if a.outcome == pb.DELIVERY_OUTCOME_FAILED:
            count, _ = failed.get(a.channel, (0, ""))
            failed[a.channel] = (count + 1, a.reason)
            continue
        count, reason = failed.pop(a.channel, (0, ""))
        tried = f"{a.channel} failed x{count} ({reason})" if count else a.channel
        if a.outcome == pb.DELIVERY_OUTCOME_DELIVERED:
            parts.append(f"{a.channel} delivered" if not count else f"{tried}, then delivered")
        elif a.outcome == pb.DELIVERY_OUTCOME_FELL_BACK:
            parts.append(tried)
        else:
            parts.append(f"{tried}: dead letter")
    parts += [f"{channel} failed x{count} ({reason})" for channel, (count, reason)
              in failed.items()]  # still trying
    return " -> ".join(parts)


def inbox_table(notifications: Sequence[pb.PartyNotification]) -> Table:
    now = datetime.now(UTC)
    grid = render.table(*COLUMNS, caption=times.times_caption())
    for n in notifications:
        render.add_row(grid, *_row(n, now))
    return grid


def add_commands(app: typer.Typer, stub: Stub) -> None:
    @app.command(help="What waits for a party (overdue first), with each delivery attempt "
                      "through its channels; then `ack WARNING_ID`.")
    def inbox(
        party: Annotated[str, typer.Option(help="a grid officer, duty officer or department")],
        all_: Annotated[bool, typer.Option("--all", help="also what was acknowledged or "
                                                         "withdrawn")] = False,
        follow: Annotated[bool, typer.Option(help="then show notifications as they come "
                                                  "(Ctrl-C to stop)")] = False,
    ) -> None:
        answer = stub().ListInbox(pb.ListInboxRequest(party=party, include_done=all_))
        render.show_list(answer.notifications, inbox_table)
        if not follow:
            return
        errors.note(f"following {party}'s inbox (Ctrl-C to stop)")
        for n in stub().FollowInbox(pb.FollowInboxRequest(party=party)):
            if render.wants_json():
                render.print_ndjson(n)
            else:
                render.emit("  ".join(str(c) for c in _row(n, datetime.now(UTC)) if str(c)))
                sys.stdout.flush()

    @app.command(help="A warning's escalation chain: who was told, when, who acknowledged.")
    def escalation(warning: Annotated[str, typer.Argument(help="the warning's id")]) -> None:
        found = stub().GetEscalation(pb.GetEscalationRequest(warning_id=warning)).escalation
        render.show(found, lambda: render.describe(found))

    @app.command(help="A warning as a CAP 1.2 alert (`cap WARNING_ID`); another agency's "
                      "alert taken in (`cap import FILE`, - for stdin); imported alerts "
                      "(`cap list [--unplaced]`); an unplaced one placed (`cap place "
                      "SENDER,IDENTIFIER --district D | --cell H3`) or dismissed (`cap "
                      "dismiss SENDER,IDENTIFIER --reason R`).")
    def cap(
        target: Annotated[str, typer.Argument(
            metavar="WARNING_ID|import|list|place|dismiss",
            help="the warning, or what to do with imported alerts")],
        what: Annotated[str | None, typer.Argument(
            metavar="[FILE|SENDER,IDENTIFIER]",
            help="import: the CAP XML file (- for standard input); place, dismiss: the "
                 "alert as `cap list` shows it")] = None,
        all_: Annotated[bool, typer.Option("--all", help="every alert of the warning, in "
                                                         "order")] = False,
        unplaced: Annotated[bool, typer.Option(help="list: only the alerts waiting to be "
                                                    "placed or dismissed")] = False,
        district: Annotated[list[str] | None, typer.Option(
            help="place: a district of the grid (repeat for more)")] = None,
        cell: Annotated[list[str] | None, typer.Option(
            help="place: an H3 cell of the grid (repeat for more)")] = None,
        reason: Annotated[str, typer.Option(help="dismiss: why it is not the city's "
                                                 "concern")] = "",
    ) -> None:
        if target == "import":
            if not what:
                raise typer.BadParameter("cap import FILE (or - for standard input)")
            try:
                xml = sys.stdin.buffer.read() if what == "-" else Path(what).read_bytes()
            except OSError as error:
                errors.fail(f"cannot read {what}: {error.strerror}")
            answer = stub().ImportCapAlert(pb.ImportCapAlertRequest(xml=xml))
            render.show(answer, lambda: render.describe(answer))
            return
        if target == "list":
            status = pb.CAP_ALERT_STATUS_UNPLACED if unplaced else 0
            found = stub().ListCapAlerts(pb.ListCapAlertsRequest(status=status))  # type: ignore[arg-type]
            render.show_list(found.alerts, imported_table)
            return
        if target in ("place", "dismiss"):
            sender, _, identifier = (what or "").partition(",")
            if not sender or not identifier:
                raise typer.BadParameter(f"cap {target} SENDER,IDENTIFIER (as `cap list` "
                                         "shows it)")
            if target == "place":
                placed = stub().PlaceCapAlert(pb.PlaceCapAlertRequest(
                    sender=sender, identifier=identifier, districts=district or [],
                    grid_cells=cell or []))
                render.show(placed, lambda: render.describe(placed))
                return
            dismissed = stub().DismissCapAlert(pb.DismissCapAlertRequest(
                sender=sender, identifier=identifier, reason=reason))
            render.show(dismissed.alert, lambda: render.describe(dismissed.alert))
            return
        alerts = stub().GetCapAlerts(pb.GetCapAlertsRequest(warning_id=target)).alerts
        chosen: Sequence[pb.CapAlert] = alerts if all_ or render.wants_json() else alerts[-1:]
        if render.wants_json():
            render.show_list(chosen, lambda _: "")
        else:
            render.emit("\n".join(a.xml.decode() for a in chosen).rstrip())


def imported_table(alerts: Sequence[pb.ImportedCapAlert]) -> Table:
    grid = render.table("alert", "type", "status", "hazard", "level", "where", "headline",
                     caption=times.times_caption())
    for a in alerts:
        cells = sorted({c for t in a.targets for c in t.grid_cells})
        where = (f"{len(cells)} cells" if cells
                 else "; ".join(d for i in a.infos for d in i.area_descs)[:60] or "-")
        render.add_row(grid, f"{a.sender},{a.identifier}", a.msg_type,
                    choices.enum_label(pb.CapAlertStatus, a.status, "CAP_ALERT_STATUS_").lower()
                    + (f" ({a.duty_party})" if a.status == pb.CAP_ALERT_STATUS_UNPLACED
                       else ""), a.hazard, render.level_cell(a.level), where, a.headline[:60])
    return grid
