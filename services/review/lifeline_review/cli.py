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
from lifeline.incident.model import grade_name
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc

from lifeline_review import chain


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


def read_history(path: Path) -> tuple[list[incident_pb2.IncidentEvent], list[int]]:
    """The events of an NDJSON history and the line each came from; a line that is not an
    incident event stops it, named with the sequence of the event before it."""
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
            after = f" (after event {meta_of(events[-1]).sequence})" if events else ""
            raise SystemExit(f"lifeline-review: {path}:{number}: not an incident "
                             f"event{after}: {error}") from None
        numbers.append(number)
    return events, numbers


def verify_history(args: argparse.Namespace) -> Any:
    """Check an exported history's hash chain on this machine, naming the first event
    that does not match."""
    path = Path(args.target)
    events, numbers = read_history(path)
    if not events:
        raise SystemExit(f"lifeline-review: {path}: no events")
    if not any(e.chain_digest for e in events):
        raise SystemExit(f"lifeline-review: {path}: carries no hash chain (exported before "
                         "histories carried one); it cannot be verified")
    broken = chain.first_break(events)
    if broken is not None:
        raise SystemExit(f"lifeline-review: {path}:{numbers[broken.index]}: {broken}")
    return (f"{path}: {len(events)} events of incident {meta_of(events[0]).aggregate_id}, "
            f"chain holds; head {events[-1].chain_digest}")


def import_history(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    path = Path(args.target)
    events, numbers = read_history(path)
    try:
        answer = _stub(channel).ImportHistory(pb.ImportHistoryRequest(events=events))
    except grpc.RpcError as error:
        detail = error.details() or ""
        found = re.match(r"events\[(\d+)\]", detail)
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and found:
            raise SystemExit(f"lifeline-review: {path}:{numbers[int(found.group(1))]}: "
                             f"{detail}") from None
        raise
    chained = "chain verified" if answer.chain_verified else "no hash chain to verify"
    return (f"imported {answer.events} events of incident {answer.original_incident_id} "
            f"({text.state_name(answer.state.state)}) as {answer.incident_id}; "
            f"sha256 {answer.digest[:16]}…; {chained}")


def replay(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return text.replay_table(list(_stub(channel).ReplayIncident(
        pb.ReplayIncidentRequest(incident_id=args.incident))))


def evaluate(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    e = _stub(channel).EvaluateIncident(
        pb.EvaluateIncidentRequest(incident_id=args.incident)).evaluation
    return e if args.json else text.evaluation_table(e)


GRADES = clikit.enum_choice(incident_pb2.Grade, "GRADE_")
CATEGORIES = clikit.enum_choice(incident_pb2.Category, "CATEGORY_")
ORIGINS = clikit.enum_choice(pb.HistoryOrigin, "HISTORY_ORIGIN_")


def _filter(args: argparse.Namespace) -> pb.IncidentFilter:
    f = pb.IncidentFilter(hazards=args.hazard or [], grid_cells=args.cell or [],
                          plan_ids=args.plan or [])
    f.grades.extend(GRADES[g] for g in args.grade or [])  # type: ignore[misc]
    f.categories.extend(CATEGORIES[c] for c in args.category or [])  # type: ignore[misc]
    f.origin = ORIGINS[args.origin] if args.origin else 0  # type: ignore[assignment]
    if args.opened_from:
        f.opened_from.CopyFrom(clikit.timestamp(args.opened_from))
    if args.opened_before:
        f.opened_before.CopyFrom(clikit.timestamp(args.opened_before))
    return f


def _took(d: Any) -> str:
    seconds = d.ToTimedelta().total_seconds()
    return f"{seconds * 1000:.1f} ms" if seconds < 60 else text.duration(d)


def report(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    stub = _stub(channel)
    e = stub.EvaluateIncidents(pb.EvaluateIncidentsRequest(
        filter=_filter(args), include_incidents=bool(args.html))).evaluation
    lines = []
    if args.html:
        from lifeline_review.pictures import report_html

        history = list(stub.GetIncidentHistory(pb.GetIncidentHistoryRequest(
            incident_id=args.incident))) if args.incident else []
        Path(args.html).write_text(report_html(e, args.title, history))
        lines.append(f"wrote {args.html}")
        e.ClearField("evaluations")
    if args.json:
        return e if not args.html else "\n".join(lines)
    phases = clikit.Table(["phase", "incidents", "p50", "p90", "max"], [
        [p.phase, p.count, _took(p.p50), _took(p.p90), _took(p.max)]
        for p in (*e.phases, *e.software) if p.count])
    departments = clikit.Table(
        ["department", "orders", "ack p50", "ack p90", "closed", "closure rate", "overdue"],
        [[d.department, d.orders_issued, text.duration(d.acknowledgement_p50),
          text.duration(d.acknowledgement_p90), d.orders_closed, f"{d.closure_rate:.0%}",
          d.orders_overdue] for d in e.departments])
    units = clikit.Table(["unit kind", "assigned", "short"],
                         [[u.unit_kind, u.assigned, u.short] for u in e.units])
    materials = clikit.Table(["material", "reserved"], [[m.name, f"{m.quantity:g} {m.unit}"]
                                                       for m in e.materials])
    return "\n\n".join([
        f"{e.incidents} incidents; within the plan's response-time target: "
        f"{e.within_target} of {e.with_target} ({e.percent_within_target:.1f}%); never "
        f"reached: {e.not_reached}; warning precision {e.warning_precision:.0%} "
        f"({e.warnings_confirmed} confirmed, {e.warnings_dismissed} false alarms)",
        phases.render(), departments.render(), units.render(),
        *([materials.render()] if e.materials else []), *lines])


def as_of(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _stub(channel).GetIncidentAsOf(pb.GetIncidentAsOfRequest(
        incident_id=args.incident, as_of=clikit.timestamp(args.at)))
    if not answer.HasField("state"):
        return f"incident {args.incident} had not opened by {args.at}"
    if args.json:
        return answer
    v = answer.state
    return clikit.Table(["field", "value"], [
        ["state", text.state_name(v.state)], ["grade", grade_name(v.grade)],
        ["events by then", f"{answer.events} of {answer.events_total}"],
        ["units deployed", ", ".join(u.unit_id for u in v.units if not u.released) or "-"],
        ["orders open", ", ".join(o.id for o in v.orders if o.status in (
            incident_pb2.ORDER_STATUS_ISSUED, incident_pb2.ORDER_STATUS_ACKNOWLEDGED,
            incident_pb2.ORDER_STATUS_IN_PROGRESS)) or "-"],
        ["last step (field time)", clikit.when(v.updated_at)]])


def city(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    request = pb.GetCityAsOfRequest(as_of=clikit.timestamp(args.at))
    request.origin = ORIGINS[args.origin] if args.origin else 0  # type: ignore[assignment]
    answer = _stub(channel).GetCityAsOf(request)
    if args.json:
        return answer
    committed: dict[str, list[str]] = {}
    for unit in answer.committed_units:
        committed.setdefault(unit.incident_id, []).append(unit.unit_id)
    incidents = clikit.Table(["incident", "state", "hazard", "grade", "cell", "units"], [
        [v.id, text.state_name(v.state), v.hazard_type or v.hazard, grade_name(v.grade),
         v.grid_cell, len(committed.get(v.id, []))] for v in answer.active_incidents])
    return (f"as of {args.at}: {len(answer.active_incidents)} active incidents, "
            f"{len(answer.committed_units)} units committed\n\n{incidents.render()}")


def rehearse(args: argparse.Namespace) -> Any:
    """Demand played again in process against the baseline and each variant (offline)."""
    from lifeline.plans import PlanLibrary

    from lifeline_review import demand, rehearsal

    try:
        if args.generate:
            spec = demand.DemandSpec.load(Path(args.generate))
            calls = demand.draw_calls(spec)
        else:
            spec = demand.DemandSpec()
            files = sorted(Path(args.histories).glob("*.ndjson"))
            if not files:
                raise SystemExit(f"lifeline-review: no *.ndjson histories in {args.histories}")
            calls = demand.calls_from_histories(read_history(f)[0] for f in files)
        fleet = demand.Fleet.load(Path(args.units)) if args.units else \
            demand.default_fleet(spec)
        base = rehearsal.baseline(fleet, PlanLibrary.load(Path(args.plans))
                                  if args.plans else None)
        variants = [base, *(rehearsal.variant(f"variant {n}", base, v)
                            for n, v in enumerate(args.variant, start=1))]
    except (OSError, ValueError) as error:
        raise SystemExit(f"lifeline-review: {error}") from None
    if args.write_fleet:
        Path(args.write_fleet).write_text(base.fleet.dumps())
    outcomes = rehearsal.rehearse(calls, variants, args.speed, include_incidents=bool(args.html))
    if args.html:
        from lifeline_review.pictures import report_html

        last = outcomes[-1]
        Path(args.html).write_text(report_html(
            last.evaluation, f"Rehearsal of {len(calls)} incidents: {last.variant.name}"))
        for o in outcomes:
            o.evaluation.ClearField("evaluations")
    if args.json:
        return json.dumps([{"variant": o.variant.name, "evaluation": json_format.MessageToDict(
            o.evaluation)} for o in outcomes], indent=2)

    def row(name: str, value: Any) -> list[Any]:
        return [name, *(value(o) for o in outcomes)]

    table = clikit.Table(["measure", *(o.variant.name for o in outcomes)], [
        row("incidents", lambda o: o.evaluation.incidents),
        row("response time p50", lambda o: text.duration(o.phase("response_time").p50)),
        row("response time p90", lambda o: text.duration(o.phase("response_time").p90)),
        row("within the plan's target",
            lambda o: f"{o.evaluation.percent_within_target:.1f}%"),
        row("never reached", lambda o: o.evaluation.not_reached),
        row("units sent", lambda o: o.units_sent),
        row("units short", lambda o: o.units_short),
        row("coverage (units sent / asked)", lambda o: f"{o.coverage:.1%}"),
        row("declared -> contained p90",
            lambda o: text.duration(o.phase("declared_to_contained").p90)),
    ])
    return table.render() + (f"\n\nwrote {args.html}" if args.html else "")


def _finding(text_: str) -> pb.Finding:
    """measure=observed/target[:unit], e.g. response_time_p90=18.5/15:minutes."""
    try:
        measure, numbers = text_.split("=", 1)
        numbers, _, unit = numbers.partition(":")
        observed, target = numbers.split("/", 1)
        return pb.Finding(measure=measure, observed=float(observed), target=float(target),
                          unit=unit)
    except ValueError:
        raise SystemExit(f"lifeline-review: --finding {text_!r}: expected "
                         "MEASURE=OBSERVED/TARGET[:UNIT], e.g. response_time_p90=18.5/15:minutes"
                         ) from None


def _revision_table(r: pb.PlanRevision) -> clikit.Table:
    return clikit.Table(["field", "value"], [
        ["revision", r.id], ["plan", f"{r.plan_id} v{r.from_version} -> v{r.to_version}"],
        ["status", pb.PlanRevisionStatus.Name(r.status).removeprefix(
            "PLAN_REVISION_STATUS_").lower()],
        ["proposed", f"{r.proposed_by} at {clikit.when(r.proposed_at)}: {r.reason}"],
        ["evidence", ", ".join(r.incident_ids) or "-"],
        *[[f"finding {f.measure}", f"{f.observed:g} against {f.target:g} {f.unit}"]
          for f in r.findings],
        ["decided", f"{r.decided_by} at {clikit.when(r.decided_at)}: {r.decision_reason}"
         if r.decided_by else "-"],
        ["content sha256", r.content_hash]])


def revision(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    stub = _stub(channel)
    if args.action == "propose":
        try:
            plan_toml = Path(args.file).read_bytes()
        except (OSError, TypeError) as error:
            raise SystemExit(f"lifeline-review: --file: cannot read {args.file}: {error}"
                             ) from None
        answer = stub.ProposePlanRevision(pb.ProposePlanRevisionRequest(
            plan_id=args.target, plan_toml=plan_toml, reason=args.reason or "",
            incident_ids=args.incident or [],
            findings=[_finding(f) for f in args.finding or []]))
    elif args.action in ("accept", "reject"):
        answer = stub.DecidePlanRevision(pb.DecidePlanRevisionRequest(
            revision_id=args.target, accept=args.action == "accept", reason=args.reason or ""))
    else:
        answer = stub.GetPlanRevision(pb.GetPlanRevisionRequest(revision_id=args.target))
    if args.action == "export":
        if answer.status != pb.PLAN_REVISION_STATUS_ACCEPTED:
            raise SystemExit(f"lifeline-review: revision {answer.id} is not accepted; only "
                             "an accepted revision becomes the plan's next version")
        if not args.output:
            raise SystemExit("lifeline-review: export needs -o FILE (e.g. "
                             f"plans/{answer.plan_id}.toml)")
        Path(args.output).write_bytes(answer.plan_toml)
        return (f"wrote {answer.plan_id} v{answer.to_version} to {args.output}; dispatch "
                "loads it as the plan in force when it next starts with that plans folder")
    return answer if args.json else _revision_table(answer)


def revisions(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    listed = _stub(channel).ListPlanRevisions(pb.ListPlanRevisionsRequest(
        plan_id=args.plan or "")).revisions
    return clikit.Table(["revision", "plan", "versions", "status", "proposed by", "reason"], [
        [r.id, r.plan_id, f"{r.from_version} -> {r.to_version}",
         pb.PlanRevisionStatus.Name(r.status).removeprefix("PLAN_REVISION_STATUS_").lower(),
         r.proposed_by, r.reason] for r in listed])


def histories(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return clikit.Table(["incident", "events", "state"], [
        [h.incident_id, h.events, text.state_name(h.state)]
        for h in _stub(channel).ListHistories(pb.ListHistoriesRequest()).histories])


def main(argv: Sequence[str] | None = None) -> None:
    p, sub = clikit.parser("review", "Replay and evaluate incident histories.")
    s = sub.add_parser("history", help="an incident's events: show, export (NDJSON), import, "
                                       "verify (its hash chain, offline)")
    s.add_argument("action", choices=["show", "export", "import", "verify"])
    s.add_argument("target", metavar="INCIDENT|FILE",
                   help="the incident (show, export) or the NDJSON file (import, verify)")
    s.add_argument("-o", "--output", help="export: write to this file instead of stdout")
    sub.add_parser("replay", help="each event with the state after it").add_argument("incident")
    sub.add_parser("evaluate", help="phase durations of an incident").add_argument("incident")
    sub.add_parser("histories", help="list the histories review keeps")
    r = sub.add_parser("report", help="measures across incidents (p50/p90/max per phase, "
                                      "within target, departments, units); --html for charts")
    r.add_argument("--from", dest="opened_from", metavar="TIME",
                   help="incidents opened at or after this field time (ISO-8601)")
    r.add_argument("--before", dest="opened_before", metavar="TIME",
                   help="incidents opened before this field time")
    r.add_argument("--category", action="append", choices=sorted(CATEGORIES))
    r.add_argument("--hazard", action="append", help="hazard type (repeatable)")
    r.add_argument("--grade", action="append", choices=sorted(GRADES))
    r.add_argument("--cell", action="append", help="H3 grid cell (repeatable: a district)")
    r.add_argument("--plan", action="append", help="plan id (repeatable)")
    r.add_argument("--origin", choices=sorted(ORIGINS), help="live or imported histories")
    r.add_argument("--html", metavar="FILE", help="also write the report with its charts")
    r.add_argument("--incident", help="with --html: draw this incident's timeline too")
    r.add_argument("--title", default="Lifeline: evaluation across incidents")
    a = sub.add_parser("as-of", help="one incident as it stood at a field time")
    a.add_argument("incident")
    a.add_argument("--at", required=True, help="field time (ISO-8601)")
    c = sub.add_parser("city", help="active incidents and committed units at a field time")
    c.add_argument("--at", required=True, help="field time (ISO-8601)")
    c.add_argument("--origin", choices=sorted(ORIGINS), help="default: live histories")
    h = sub.add_parser("rehearse", help="sandbox rehearsal: recorded or generated demand "
                                        "against the plans and units in force and variants "
                                        "(in process, touching nothing live)")
    demand_from = h.add_mutually_exclusive_group(required=True)
    demand_from.add_argument("--histories", metavar="DIR",
                             help="recorded demand: the exported histories (*.ndjson) in DIR")
    demand_from.add_argument("--generate", metavar="SPEC",
                             help="generated demand: a spec file (TOML: incidents, seed, "
                                  "hours, [hazards], cells, hot_share, fleet, speed_kmh ...)")
    h.add_argument("--units", metavar="FILE",
                   help="the baseline's fleet ([[units]] id, kind, lat, lon); default: the "
                        "generated city's")
    h.add_argument("--plans", metavar="DIR", help="the baseline's plans (default: shipped)")
    h.add_argument("--variant", action="append", default=[], metavar="units=FILE,plans=DIR",
                   help="a variant to compare (repeatable)")
    h.add_argument("--speed", type=float, default=30.0,
                   help="travel model: km/h from the unit's station (default 30)")
    h.add_argument("--write-fleet", metavar="FILE", help="write the baseline's fleet (to edit)")
    h.add_argument("--html", metavar="FILE", help="the last variant's report with charts")
    v = sub.add_parser("revision", help="plan revisions (预案修订): propose one with its "
                                        "evidence, accept or reject it, show it, export an "
                                        "accepted one as the plan file")
    v.add_argument("action", choices=["propose", "accept", "reject", "show", "export"])
    v.add_argument("target", metavar="PLAN|REVISION",
                   help="the plan id (propose) or the revision id (the others)")
    v.add_argument("--file", help="propose: the plan file as it should read (TOML)")
    v.add_argument("--reason", help="propose, accept, reject: why")
    v.add_argument("--incident", action="append", help="propose: an incident as evidence")
    v.add_argument("--finding", action="append", metavar="MEASURE=OBSERVED/TARGET[:UNIT]",
                   help="propose: a number behind it (repeatable)")
    v.add_argument("-o", "--output", help="export: where to write the plan file")
    sub.add_parser("revisions", help="list plan revisions").add_argument("--plan")
    commands: dict[str, clikit.Command] = {"history": history, "replay": replay,
                                           "evaluate": evaluate, "histories": histories,
                                           "report": report, "as-of": as_of, "city": city,
                                           "revision": revision, "revisions": revisions}
    clikit.run("review", p, commands, _serve, argv, offline=_offline)


def _offline(args: argparse.Namespace) -> Any:
    if args.command == "history" and args.action == "verify":
        return verify_history(args)
    if args.command == "rehearse":
        return rehearse(args)
    return NotImplemented


def _serve() -> None:
    from lifeline.runtime import serve_forever

    from lifeline_review.bootstrap import build

    serve_forever("review", build)
