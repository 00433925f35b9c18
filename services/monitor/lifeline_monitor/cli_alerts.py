"""lifeline-monitor's commands for what reaches people and agencies: `inbox --party P
[--follow]` (then `ack WARNING_ID`), `escalation WARNING_ID`, `cap WARNING_ID` and
`cap import FILE|-`."""

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from lifeline.cli import kit
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
    return [kit.cell("OVERDUE" if late else "", "bold white on red" if late else None),
            n.warning_id, kit.level_cell(n.level), n.cell_name or n.grid_cell,
            f"{n.step}" + (f" (round {n.round + 1})" if n.round else ""), n.channel,
            kit.when(n.notified_at),
            kit.when(n.ack_deadline) if n.HasField("ack_deadline") else "-",
            kit.enum_label(pb.NotificationStatus, n.status, "NOTIFICATION_STATUS_").lower()
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
    grid = kit.table(*COLUMNS, caption=kit.times_caption())
    for n in notifications:
        kit.add_row(grid, *_row(n, now))
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
        kit.show_list(answer.notifications, inbox_table)
        if not follow:
            return
        kit.note(f"following {party}'s inbox (Ctrl-C to stop)")
        for n in stub().FollowInbox(pb.FollowInboxRequest(party=party)):
            if kit.wants_json():
                kit.print_ndjson(n)
            else:
                kit.emit("  ".join(str(c) for c in _row(n, datetime.now(UTC)) if str(c)))
                sys.stdout.flush()

    @app.command(help="A warning's escalation chain: who was told, when, who acknowledged.")
    def escalation(warning: Annotated[str, typer.Argument(help="the warning's id")]) -> None:
        found = stub().GetEscalation(pb.GetEscalationRequest(warning_id=warning)).escalation
        kit.show(found, lambda: kit.describe(found))

    @app.command(help="A warning as a CAP 1.2 alert (`cap WARNING_ID`), or take another "
                      "agency's alert in (`cap import FILE`, - for stdin).")
    def cap(
        target: Annotated[str, typer.Argument(metavar="WARNING_ID|import",
                                              help="the warning, or `import`")],
        file: Annotated[str | None, typer.Argument(
            help="with import: the CAP XML file, - for standard input")] = None,
        all_: Annotated[bool, typer.Option("--all", help="every alert of the warning, in "
                                                         "order")] = False,
    ) -> None:
        if target == "import":
            if not file:
                raise typer.BadParameter("cap import FILE (or - for standard input)")
            try:
                xml = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
            except OSError as error:
                kit.fail(f"cannot read {file}: {error.strerror}")
            answer = stub().ImportCapAlert(pb.ImportCapAlertRequest(xml=xml))
            kit.show(answer, lambda: kit.describe(answer))
            return
        alerts = stub().GetCapAlerts(pb.GetCapAlertsRequest(warning_id=target)).alerts
        chosen: Sequence[pb.CapAlert] = alerts if all_ or kit.wants_json() else alerts[-1:]
        if kit.wants_json():
            kit.show_list(chosen, lambda _: "")
        else:
            kit.emit("\n".join(a.xml.decode() for a in chosen).rstrip())
