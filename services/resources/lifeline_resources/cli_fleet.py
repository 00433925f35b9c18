"""lifeline-resources recommend, explain, close-road, reopen-road: which units would go,
why those went, and the roads they cannot take."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import grpc
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.resources.v1 import resources_pb2 as pb
from lifeline.resources.v1 import resources_pb2_grpc


def _stub(channel: grpc.Channel) -> resources_pb2_grpc.ResourcesServiceStub:
    return resources_pb2_grpc.ResourcesServiceStub(channel)


def _need(text: str) -> pb.UnitNeed:
    """KIND or KIND=COUNT, e.g. ambulance=2."""
    kind, _, count = text.partition("=")
    if not kind or (count and not count.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: write KIND or KIND=COUNT, e.g. ambulance=2")
    return pb.UnitNeed(unit_kind=kind, count=int(count or 1))


def assignments(rows: Sequence[pb.Assignment]) -> clikit.Table:
    """One line per unit sent, then one per unit passed over, indented under it."""
    lines: list[list[str]] = []
    for a in rows:
        lines.append([str(a.rank), a.unit_id, a.unit_kind, f"{a.eta_seconds / 60:.1f} min",
                      f"{a.distance_km:.2f} km", a.origin])
        lines.extend(["", f"  not {p.unit_id}", "", "", "", p.reason] for p in a.passed_over)
    return clikit.Table(["rank", "unit", "kind", "eta", "distance", "from / why not"], lines)


def recommend(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _stub(channel).RecommendUnits(pb.RecommendUnitsRequest(
        location=common_pb2.GeoPoint(lat=args.lat, lon=args.lon), needs=args.needs))
    if args.json:
        return answer
    return _explained(answer.recommended, answer.shortfalls)


def explain(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _stub(channel).GetRequest(pb.GetRequestRequest(id=args.request)).answer
    if args.json:
        return answer
    return _explained(answer.assignments, answer.shortfalls)


def _explained(rows: Sequence[pb.Assignment], shortfalls: Sequence[pb.Shortfall]) -> str:
    basis = {a.basis for a in rows}
    text = [assignments(rows).render()] if rows else ["no unit available"]
    text += [f"travel time: {b}" for b in sorted(basis)]
    text += [f"short of {s.missing} {s.unit_kind}" for s in shortfalls]
    return "\n".join(text)


def close_road(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    segment = _stub(channel).CloseRoad(pb.CloseRoadRequest(segment_id=args.segment,
                                                           reason=args.reason)).segment
    return segment if args.json else f"road {segment.id} closed: {segment.reason}"


def reopen_road(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    segment = _stub(channel).ReopenRoad(pb.ReopenRoadRequest(segment_id=args.segment)).segment
    return segment if args.json else f"road {segment.id} open"


def coverage(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _stub(channel).ListCoverage(pb.ListCoverageRequest(gaps_only=args.gaps))
    if args.json:
        return answer
    rows = []
    for c in answer.coverage:
        move = c.move_up
        suggested = (f"{move.id}: {move.unit_id} ({move.eta_seconds / 60:.1f} min) "
                     f"{pb.MoveUpStatus.Name(move.status).removeprefix('MOVE_UP_STATUS_')}"
                     .lower() if move.id else "")
        rows.append([c.requirement_id, c.unit_kind, f"{c.covering}/{c.minimum}",
                     f"{c.within_seconds / 60:g} min", "GAP" if c.gap else "met", suggested])
    return clikit.Table(["requirement", "kind", "covering", "within", "", "move-up"], rows)


def decide(accept: bool) -> clikit.Command:
    def command(args: argparse.Namespace, channel: grpc.Channel) -> Any:
        request = pb.MoveUpDecisionRequest(move_up_id=args.id, reason=args.reason)
        stub = _stub(channel)
        answer = (stub.AcceptMoveUp if accept else stub.DeclineMoveUp)(request).coverage
        if args.json:
            return answer
        move = answer.move_up
        verb = "accepted: moves to" if accept else "declined: stays; the gap at"
        return (f"move-up {move.id} {verb} {answer.name or answer.requirement_id} "
                f"({move.unit_id})")
    return command


def add_parsers(sub: Any) -> dict[str, clikit.Command]:
    s = sub.add_parser("recommend", help="which units would go to a place now, and why")
    s.add_argument("needs", nargs="+", type=_need, metavar="KIND[=COUNT]",
                   help="unit kinds and how many, e.g. ambulance=2 fire_engine")
    s.add_argument("--lat", type=float, required=True, help="latitude of the place")
    s.add_argument("--lon", type=float, required=True, help="longitude of the place")
    s = sub.add_parser("explain", help="why an answered resource request sent the units it did")
    s.add_argument("request", help="the request id (on the incident's resources_requested)")
    s = sub.add_parser("close-road", help="close a segment of the loaded road graph")
    s.add_argument("segment", help="the segment id in the road graph (LIFELINE_ROADS)")
    s.add_argument("--reason", required=True, help="why, e.g. 'flooded, 0.6 m'")
    s = sub.add_parser("reopen-road", help="open a closed segment again")
    s.add_argument("segment")
    s = sub.add_parser("coverage", help="coverage requirements, gaps and move-ups suggested")
    s.add_argument("--gaps", action="store_true", help="only the requirements not met now")
    s = sub.add_parser("accept-moveup", help="move the suggested unit's station to the gap")
    s.add_argument("id", help="the move-up id (see `coverage`)")
    s.add_argument("--reason", default="", help="a note for the record")
    s = sub.add_parser("decline-moveup", help="keep the unit where it is")
    s.add_argument("id", help="the move-up id (see `coverage`)")
    s.add_argument("--reason", required=True, help="why not, for the record")
    return {"recommend": recommend, "explain": explain, "close-road": close_road,
            "reopen-road": reopen_road, "coverage": coverage,
            "accept-moveup": decide(accept=True), "decline-moveup": decide(accept=False)}
