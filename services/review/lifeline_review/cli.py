"""lifeline-review: replay and evaluate incident histories, for evaluators."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import grpc
from lifeline import clikit
from lifeline.events import event_of, meta_of
from lifeline.incident import text
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc


def _stub(channel: grpc.Channel) -> review_pb2_grpc.ReviewServiceStub:
    return review_pb2_grpc.ReviewServiceStub(channel)


def history(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    events = list(_stub(channel).GetIncidentHistory(
        pb.GetIncidentHistoryRequest(incident_id=args.incident)))
    if args.json:
        from google.protobuf import json_format

        return "\n".join(json_format.MessageToJson(e, indent=None) for e in events)
    return clikit.Table(["#", "field time (UTC)", "event", "what", "actor"], [
        [meta_of(e).sequence, clikit.when(meta_of(e).occurred_at), event_of(e)[0],
         text.describe(e), meta_of(e).actor] for e in events])


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
    sub.add_parser("history", help="an incident's events in order").add_argument("incident")
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
