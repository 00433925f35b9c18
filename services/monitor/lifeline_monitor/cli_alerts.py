"""lifeline-monitor's commands for what reaches people and agencies: `inbox --party P
[--follow]` (then `ack WARNING_ID`), `escalation WARNING_ID`, `cap WARNING_ID` and
`cap import FILE|-`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.events import from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc

COLUMNS = ["", "warning", "level", "where", "step", "channel", "notified", "ack by",
           "status"]


def _stub(channel: grpc.Channel) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channel)


def _row(n: pb.PartyNotification, now: datetime) -> list[Any]:
    late = (n.status == pb.NOTIFICATION_STATUS_WAITING and n.HasField("ack_deadline")
            and from_timestamp(n.ack_deadline) <= now)
    return ["OVERDUE" if late else "", n.warning_id,
            common_pb2.WarningLevel.Name(n.level).removeprefix("WARNING_LEVEL_"),
            n.cell_name or n.grid_cell, f"{n.step}" + (f" (round {n.round + 1})" if n.round
                                                       else ""),
            n.channel, clikit.when(n.notified_at),
            clikit.when(n.ack_deadline) if n.HasField("ack_deadline") else "-",
            pb.NotificationStatus.Name(n.status).removeprefix("NOTIFICATION_STATUS_").lower()
            + (f" by {n.acknowledged_by}" if n.acknowledged_by else "")]


def inbox(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    stub = _stub(channel)
    answer = stub.ListInbox(pb.ListInboxRequest(party=args.party, include_done=args.all))
    now = datetime.now(UTC)
    if not args.follow:
        return answer if args.json else clikit.Table(
            COLUMNS, [_row(n, now) for n in answer.notifications])
    clikit.emit(answer if args.json else clikit.Table(
        COLUMNS, [_row(n, now) for n in answer.notifications]), args.json)
    print(f"following {args.party}'s inbox (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        for n in stub.FollowInbox(pb.FollowInboxRequest(party=args.party)):
            if args.json:
                print(json_format.MessageToJson(n, indent=None), flush=True)
            else:
                print("  ".join(str(c) for c in _row(n, datetime.now(UTC)) if c != ""),
                      flush=True)
    except KeyboardInterrupt:
        pass
    return None


def escalation(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).GetEscalation(pb.GetEscalationRequest(
        warning_id=args.warning)).escalation


def cap(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    stub = _stub(channel)
    if args.target == "import":
        if not args.file:
            raise SystemExit("lifeline-monitor: cap import FILE (or - for standard input)")
        xml = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        return stub.ImportCapAlert(pb.ImportCapAlertRequest(xml=xml))
    alerts = stub.GetCapAlerts(pb.GetCapAlertsRequest(warning_id=args.target)).alerts
    if args.json:
        return "\n".join(json_format.MessageToJson(a, indent=None) for a in alerts)
    chosen: Sequence[pb.CapAlert] = alerts if args.all else alerts[-1:]
    return "\n".join(a.xml.decode() for a in chosen).rstrip()


def add_commands(sub: Any) -> dict[str, clikit.Command]:
    s = sub.add_parser("inbox", help="what waits for a party (overdue first); then ack it")
    s.add_argument("--party", required=True, help="a grid officer, duty officer or department")
    s.add_argument("--all", action="store_true", help="also what was acknowledged or withdrawn")
    s.add_argument("--follow", action="store_true", help="then show notifications as they come")
    s = sub.add_parser("escalation", help="a warning's escalation chain")
    s.add_argument("warning")
    s = sub.add_parser("cap", help="a warning as a CAP 1.2 alert (cap WARNING_ID), or take "
                                   "one in (cap import FILE|-)")
    s.add_argument("target", metavar="WARNING_ID|import")
    s.add_argument("file", nargs="?", help="with import: the CAP XML file, - for stdin")
    s.add_argument("--all", action="store_true", help="every alert of the warning, in order")
    return {"inbox": inbox, "escalation": escalation, "cap": cap}
