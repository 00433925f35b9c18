"""lifeline-monitor's commands for what reaches people and agencies: `inbox --party P
[--follow]` (then `ack WARNING_ID`), `escalation WARNING_ID`, `cap WARNING_ID` and
`cap import FILE|-`."""

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
           "status")
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
            + (f" by {n.acknowledged_by}" if n.acknowledged_by else "")]


def inbox_table(notifications: Sequence[pb.PartyNotification]) -> Table:
    now = datetime.now(UTC)
    grid = render.table(*COLUMNS, caption=times.times_caption())
    for n in notifications:
        render.add_row(grid, *_row(n, now))
    return grid


def add_commands(app: typer.Typer, stub: Stub) -> None:
    @app.command(help="What waits for a party (overdue first); then `ack WARNING_ID`.")
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
                errors.fail(f"cannot read {file}: {error.strerror}")
            answer = stub().ImportCapAlert(pb.ImportCapAlertRequest(xml=xml))
            render.show(answer, lambda: render.describe(answer))
            return
        alerts = stub().GetCapAlerts(pb.GetCapAlertsRequest(warning_id=target)).alerts
        chosen: Sequence[pb.CapAlert] = alerts if all_ or render.wants_json() else alerts[-1:]
        if render.wants_json():
            render.show_list(chosen, lambda _: "")
        else:
            render.emit("\n".join(a.xml.decode() for a in chosen).rstrip())
