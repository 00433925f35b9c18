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


def replay_table(steps: Sequence[pb.ReplayStep]) -> clikit.Table:
    """The replayed timeline: field time, what happened, who, and the state after it."""
    rows = []
    for step in steps:
        meta = meta_of(step.event)
        rows.append([meta.sequence, clikit.when(meta.occurred_at), event_of(step.event)[0],
                     text.describe(step.event), meta.actor, text.state_name(step.state.state)])
    return clikit.Table(["#", "field time", "event", "what", "actor", "state after"], rows)


def evaluation_table(e: pb.Evaluation) -> clikit.Table:
    def has(field: str) -> Any:
        return getattr(e, field) if e.HasField(field) else None

    return clikit.Table(["measure", "value"], [
        ["final state", text.state_name(e.final_state)],
        ["warning -> declared", text.duration(has("warning_to_declared"))],
        ["declared -> first unit assigned", text.duration(has("declared_to_first_assignment"))],
        ["response time (declared -> first on scene)", text.duration(has("response_time"))],
        ["declared -> contained", text.duration(has("declared_to_contained"))],
        ["recovery duration", text.duration(has("recovery_duration"))],
        ["total duration", text.duration(has("total_duration"))],
        ["units assigned", e.units_assigned],
        ["units short", e.units_short],
        ["events", e.events],
    ])


def history(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    events = list(_stub(channel).GetIncidentHistory(
        pb.GetIncidentHistoryRequest(incident_id=args.incident)))
    if args.json:
        from google.protobuf import json_format

        return "\n".join(json_format.MessageToJson(e, indent=None) for e in events)
    return clikit.Table(["#", "field time", "event", "what", "actor"], [
        [meta_of(e).sequence, clikit.when(meta_of(e).occurred_at), event_of(e)[0],
         text.describe(e), meta_of(e).actor] for e in events])


def replay(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return replay_table(list(_stub(channel).ReplayIncident(
        pb.ReplayIncidentRequest(incident_id=args.incident))))


def evaluate(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    e = _stub(channel).EvaluateIncident(
        pb.EvaluateIncidentRequest(incident_id=args.incident)).evaluation
    return e if args.json else evaluation_table(e)


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
