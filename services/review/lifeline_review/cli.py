"""lifeline-review: replay and evaluate incident histories, for evaluators."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from lifeline import clikit
from lifeline.events import event_of, from_json, meta_of
from lifeline.incident import text
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc


def _stub(channel: grpc.Channel) -> review_pb2_grpc.ReviewServiceStub:
    return review_pb2_grpc.ReviewServiceStub(channel)


def history(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    if args.action == "import":
        return import_history(args, channel)
    events = list(_stub(channel).GetIncidentHistory(
        pb.GetIncidentHistoryRequest(incident_id=args.target)))
    if args.action == "export" or args.json:
        # NDJSON: one IncidentEvent a line, in protobuf's canonical JSON.
        lines = "".join(json_format.MessageToJson(e, indent=None) + "\n" for e in events)
        if args.output:
            Path(args.output).write_text(lines)
            return f"wrote {len(events)} events to {args.output}"
        sys.stdout.write(lines)
        return None
    return clikit.Table(["#", "field time (UTC)", "event", "what", "actor"], [
        [meta_of(e).sequence, clikit.when(meta_of(e).occurred_at), event_of(e)[0],
         text.describe(e), meta_of(e).actor] for e in events])


def import_history(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    path = Path(args.target)
    events: list[incident_pb2.IncidentEvent] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise SystemExit(f"lifeline-review: cannot read {path}: {error.strerror}") from None
    numbers = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = from_json(json.loads(line), incident_pb2.IncidentEvent, strict=True)
            assert isinstance(event, incident_pb2.IncidentEvent)
            events.append(event)
        except (ValueError, json_format.ParseError) as error:
            raise SystemExit(f"lifeline-review: {path}:{number}: not an incident event: "
                             f"{error}") from None
        numbers.append(number)
    try:
        answer = _stub(channel).ImportHistory(pb.ImportHistoryRequest(events=events))
    except grpc.RpcError as error:
        detail = error.details() or ""
        found = re.match(r"events\[(\d+)\]", detail)
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and found:
            raise SystemExit(f"lifeline-review: {path}:{numbers[int(found.group(1))]}: "
                             f"{detail}") from None
        raise
    return (f"imported {answer.events} events of incident {answer.original_incident_id} "
            f"({text.state_name(answer.state.state)}) as {answer.incident_id}; "
            f"sha256 {answer.digest[:16]}…")


def replay(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return text.replay_table(list(_stub(channel).ReplayIncident(
        pb.ReplayIncidentRequest(incident_id=args.incident))))


def evaluate(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    e = _stub(channel).EvaluateIncident(
        pb.EvaluateIncidentRequest(incident_id=args.incident)).evaluation
    return e if args.json else text.evaluation_table(e)


def histories(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return clikit.Table(["incident", "events", "state"], [
        [h.incident_id, h.events, text.state_name(h.state)]
        for h in _stub(channel).ListHistories(pb.ListHistoriesRequest()).histories])


def main(argv: Sequence[str] | None = None) -> None:
    p, sub = clikit.parser("review", "Replay and evaluate incident histories.")
    s = sub.add_parser("history", help="an incident's events: show, export (NDJSON), import")
    s.add_argument("action", choices=["show", "export", "import"])
    s.add_argument("target", metavar="INCIDENT|FILE",
                   help="the incident (show, export) or the NDJSON file (import)")
    s.add_argument("-o", "--output", help="export: write to this file instead of stdout")
    sub.add_parser("replay", help="each event with the state after it").add_argument("incident")
    sub.add_parser("evaluate", help="phase durations of an incident").add_argument("incident")
    sub.add_parser("histories", help="list the histories review keeps")
    commands: dict[str, clikit.Command] = {"history": history, "replay": replay,
                                           "evaluate": evaluate, "histories": histories}
    clikit.run("review", p, commands, _serve, argv)


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_review.bootstrap import build

    serve_forever("review", build)
