"""lifeline-review: replay and evaluate incident histories, for evaluators."""

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import json_format
from lifeline.cli import choices, connection, errors, render, times, views
from lifeline.cli.app import run, service_app
from lifeline.documents import load_json
from lifeline.events import from_json, meta_of
from lifeline.incident import text
from lifeline.incident.phases import grade_name
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from lifeline.review.v1 import review_pb2_grpc
from rich.console import Group
from rich.table import Table
from rich.text import Text

from lifeline_review import chain, cli_revisions

app = service_app("review", "Replay and evaluate incident histories.")
history_app = typer.Typer(help="An incident's events: show, export (NDJSON), import, verify "
                               "(its hash chain, offline).", no_args_is_help=True)
app.add_typer(history_app, name="history")

Incident = Annotated[str, typer.Argument(metavar="INCIDENT", help="the incident's id")]
History = Annotated[Path, typer.Argument(metavar="FILE", help="an exported history (NDJSON)")]
FieldTime = Annotated[str, typer.Option(
    metavar="TIME", help="field time (ISO-8601; without a zone, in the city's zone)")]


def _stub() -> review_pb2_grpc.ReviewServiceStub:
    return review_pb2_grpc.ReviewServiceStub(connection.connect("review"))


def _events(incident: str) -> list[incident_pb2.IncidentEvent]:
    return list(_stub().GetIncidentHistory(pb.GetIncidentHistoryRequest(incident_id=incident)))


@history_app.command("show", help="An incident's events, in order (--json: a JSON array, "
                                  "--ndjson: one event a line).")
def history_show(incident: Incident) -> None:
    render.show_list(_events(incident), views.history_table)


@history_app.command("export", help="Write an incident's history as NDJSON (one "
                                    "IncidentEvent a line, protobuf's canonical JSON as the "
                                    "schema's interchange form: fields that are set): what "
                                    "`import`, `verify` and `rehearse` read.")
def history_export(
    incident: Incident,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="FILE", help="write to this file instead of stdout")] = None,
) -> None:
    if output is None:
        for event in _stub().GetIncidentHistory(
                pb.GetIncidentHistoryRequest(incident_id=incident)):
            sys.stdout.write(_exported(event))
        return
    count = 0
    with output.open("w") as file, render.progress(f"exporting {incident}", None) as advance:
        for event in _stub().GetIncidentHistory(
                pb.GetIncidentHistoryRequest(incident_id=incident)):
            file.write(_exported(event))
            count += 1
            advance(1)
    if render.wants_json():
        render.print_json({"incidentId": incident, "events": count, "file": str(output)})
    else:
        render.emit(f"wrote {count} events to {output}")


def _exported(event: incident_pb2.IncidentEvent) -> str:
    """One line of an exported history: the interchange form histories have always had
    (canonical JSON of the fields set), whatever --json prints."""
    return json_format.MessageToJson(event, indent=None) + "\n"


def read_history(path: Path) -> tuple[list[incident_pb2.IncidentEvent], list[int]]:
    """The events of an NDJSON history and the line each came from; a line that is not an
    incident event stops it, named with the sequence of the event before it."""
    events: list[incident_pb2.IncidentEvent] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        errors.fail(f"cannot read {path}: {error.strerror}")
    numbers = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = from_json(load_json(line), incident_pb2.IncidentEvent, strict=True)
            assert isinstance(event, incident_pb2.IncidentEvent)
            events.append(event)
        except (ValueError, json_format.ParseError) as error:
            after = f" (after event {meta_of(events[-1]).sequence})" if events else ""
            errors.fail(f"{path}:{number}: not an incident event{after}: {error}")
        numbers.append(number)
    return events, numbers


@history_app.command("verify", help="Check an exported history's hash chain on this machine "
                                    "(offline), naming the first event that does not match.")
def history_verify(path: History) -> None:
    events, numbers = read_history(path)
    if not events:
        errors.fail(f"{path}: no events")
    if not any(e.chain_digest for e in events):
        errors.fail(f"{path}: carries no hash chain (exported before histories carried one); it "
                    "cannot be verified")
    broken = chain.first_break(events)
    if broken is not None:
        errors.fail(f"{path}:{numbers[broken.index]}: {broken}")
    incident = meta_of(events[0]).aggregate_id
    if render.wants_json():
        render.print_json({"file": str(path), "events": len(events), "incidentId": incident,
                           "chainHolds": True, "head": events[-1].chain_digest})
    else:
        render.emit(f"{path}: {len(events)} events of incident {incident}, chain holds; head "
                    f"{events[-1].chain_digest}")


@history_app.command("import", help="Import an exported history (every event checked; "
                                    "refused naming the first bad line).")
def history_import(path: History) -> None:
    events, numbers = read_history(path)
    try:
        with render.progress(f"importing {len(events)} events", None):
            answer = _stub().ImportHistory(pb.ImportHistoryRequest(events=events))
    except grpc.RpcError as error:
        detail = error.details() or ""
        found = re.match(r"events\[(\d+)\]", detail)
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and found:
            errors.fail(f"{path}:{numbers[int(found.group(1))]}: {detail}")
        raise
    chained = "chain verified" if answer.chain_verified else "no hash chain to verify"
    render.show(answer, lambda: f"imported {answer.events} events of incident "
                f"{answer.original_incident_id} ({text.state_name(answer.state.state)}) as "
                f"{answer.incident_id}; sha256 {answer.digest[:16]}…; {chained}")


@app.command(help="Each event of an incident with the state after it.")
def replay(incident: Incident) -> None:
    steps = list(_stub().ReplayIncident(pb.ReplayIncidentRequest(incident_id=incident)))
    render.show_list(steps, views.replay_table)


@app.command(help="Phase durations and order measures of an incident, in field time.")
def evaluate(incident: Incident) -> None:
    e = _stub().EvaluateIncident(pb.EvaluateIncidentRequest(incident_id=incident)).evaluation
    render.show(e, lambda: views.evaluation_table(e))


def _took(d: Any) -> str:
    seconds = d.ToTimedelta().total_seconds()
    return f"{seconds * 1000:.1f} ms" if seconds < 60 else text.duration(d)


def _timestamp_or_none(value: str | None) -> Any:
    return times.timestamp(value) if value else None


@app.command(help="Measures across incidents: p50/p90/max per phase, within the plan's "
                  "target, departments, units; --html for charts.")
def report(
    opened_from: Annotated[str | None, typer.Option(
        "--from", metavar="TIME", help="incidents opened at or after this field time "
        "(ISO-8601)")] = None,
    opened_before: Annotated[str | None, typer.Option(
        "--before", metavar="TIME", help="incidents opened before this field time")] = None,
    category: Annotated[list[str] | None, choices.enum_option(
        incident_pb2.Category, "CATEGORY_", "a category (repeatable)", "--category")] = None,
    hazard: Annotated[list[str] | None, typer.Option(help="hazard type (repeatable)")] = None,
    grade: Annotated[list[str] | None, choices.enum_option(
        incident_pb2.Grade, "GRADE_", "a grade (repeatable)", "--grade")] = None,
    cell: Annotated[list[str] | None, typer.Option(
        help="H3 grid cell (repeatable: a district)")] = None,
    plan: Annotated[list[str] | None, typer.Option(help="plan id (repeatable)")] = None,
    origin: Annotated[str | None, choices.enum_option(
        pb.HistoryOrigin, "HISTORY_ORIGIN_", "live or imported histories", "--origin")
    ] = None,
    html: Annotated[Path | None, typer.Option(
        metavar="FILE", help="also write the report with its charts")] = None,
    incident: Annotated[str | None, typer.Option(
        help="with --html: draw this incident's timeline too")] = None,
    title: Annotated[str, typer.Option(help="the HTML report's title")
                     ] = "Lifeline: evaluation across incidents",
) -> None:
    f = pb.IncidentFilter(hazards=hazard or [], grid_cells=cell or [], plan_ids=plan or [])
    f.grades.extend(choices.enum_value(incident_pb2.Grade, "GRADE_", g) for g in grade or [])  # type: ignore[misc]
    f.categories.extend(choices.enum_value(incident_pb2.Category, "CATEGORY_", c)  # type: ignore[misc]
                        for c in category or [])
    f.origin = choices.enum_value(pb.HistoryOrigin, "HISTORY_ORIGIN_", origin)  # type: ignore[assignment]
    if opened_from:
        f.opened_from.CopyFrom(times.timestamp(opened_from))
    if opened_before:
        f.opened_before.CopyFrom(times.timestamp(opened_before))
    stub = _stub()
    e = stub.EvaluateIncidents(pb.EvaluateIncidentsRequest(
        filter=f, include_incidents=bool(html))).evaluation
    if html:
        from lifeline_review.pictures import report_html

        history = _events(incident) if incident else []
        html.write_text(report_html(e, title, history))
        e.ClearField("evaluations")
        errors.note(f"wrote {html}")
    render.show(e, lambda: _report_view(e))


def _report_view(e: pb.IncidentsEvaluation) -> Group:
    phases = render.table("phase", "incidents", "p50", "p90", "max")
    for p in (*e.phases, *e.software):
        if p.count:
            render.add_row(phases, p.phase, p.count, _took(p.p50), _took(p.p90), _took(p.max))
    departments = render.table("department", "orders", "ack p50", "ack p90", "closed",
                               "closure rate", "overdue")
    for d in e.departments:
        render.add_row(departments, d.department, d.orders_issued,
                       text.duration(d.acknowledgement_p50), text.duration(d.acknowledgement_p90),
                       d.orders_closed, f"{d.closure_rate:.0%}",
                       render.cell(d.orders_overdue, "red" if d.orders_overdue else None))
    units = render.table("unit kind", "assigned", "short")
    for u in e.units:
        render.add_row(units, u.unit_kind, u.assigned,
                       render.cell(u.short, "red" if u.short else None))
    parts: list[Table | Text] = [
        Text(f"{e.incidents} incidents; within the plan's response-time target: "
             f"{e.within_target} of {e.with_target} ({e.percent_within_target:.1f}%); never "
             f"reached: {e.not_reached}; warning precision {e.warning_precision:.0%} "
             f"({e.warnings_confirmed} confirmed, {e.warnings_dismissed} false alarms)\n"),
        phases, departments, units]
    if e.materials:
        materials = render.table("material", "reserved")
        for m in e.materials:
            render.add_row(materials, m.name, f"{m.quantity:g} {m.unit}")
        parts.append(materials)
    return Group(*parts)


@app.command("as-of", help="One incident as it stood at a field time.")
def as_of(incident: Incident, at: FieldTime) -> None:
    answer = _stub().GetIncidentAsOf(pb.GetIncidentAsOfRequest(
        incident_id=incident, as_of=times.timestamp(at)))
    if not answer.HasField("state"):
        render.show(answer, lambda: f"incident {incident} had not opened by {at}")
        return

    def people() -> Table:
        v = answer.state
        grid = render.table("field", "value", caption=times.times_caption())
        for row in (
            ["state", text.state_name(v.state)], ["grade", grade_name(v.grade)],
            ["events by then", f"{answer.events} of {answer.events_total}"],
            ["units deployed", ", ".join(u.unit_id for u in v.units if not u.released) or "-"],
            ["orders open", ", ".join(o.id for o in v.orders if o.status in views.OPEN_ORDERS)
             or "-"],
            ["last step (field time)", times.when(v.updated_at)],
        ):
            render.add_row(grid, *row)
        return grid
    render.show(answer, people)


@app.command(help="Active incidents and committed units at a field time.")
def city(
    at: FieldTime,
    origin: Annotated[str | None, choices.enum_option(
        pb.HistoryOrigin, "HISTORY_ORIGIN_", "live or imported histories (default: live)",
        "--origin")] = None,
) -> None:
    request = pb.GetCityAsOfRequest(as_of=times.timestamp(at))
    request.origin = choices.enum_value(pb.HistoryOrigin, "HISTORY_ORIGIN_", origin)  # type: ignore[assignment]
    answer = _stub().GetCityAsOf(request)

    def people() -> Group:
        committed: dict[str, list[str]] = {}
        for unit in answer.committed_units:
            committed.setdefault(unit.incident_id, []).append(unit.unit_id)
        grid = render.table("incident", "state", "hazard", "grade", "cell", "units")
        for v in sorted(answer.active_incidents, key=lambda v: (v.grade or 9, v.id)):
            render.add_row(grid, v.id, text.state_name(v.state), v.hazard_type or v.hazard,
                           grade_name(v.grade), v.grid_cell, len(committed.get(v.id, [])))
        return Group(Text(f"as of {at}: {len(answer.active_incidents)} active incidents, "
                          f"{len(answer.committed_units)} units committed\n"), grid)
    render.show(answer, people)


@app.command(help="Sandbox rehearsal: recorded or generated demand against the plans and "
                  "units in force and variants (in process, touching nothing live).")
def rehearse(
    histories: Annotated[Path | None, typer.Option(
        metavar="DIR", help="recorded demand: the exported histories (*.ndjson) in DIR")
    ] = None,
    generate: Annotated[Path | None, typer.Option(
        metavar="SPEC", help="generated demand: a spec file (TOML: incidents, seed, hours, "
        "[hazards], cells, hot_share, fleet, speed_kmh ...)")] = None,
    units: Annotated[Path | None, typer.Option(
        metavar="FILE", help="the baseline's fleet ([[units]] id, kind, lat, lon); default: "
        "the generated city's")] = None,
    plans: Annotated[Path | None, typer.Option(
        metavar="DIR", help="the baseline's plans (default: shipped)")] = None,
    variant: Annotated[list[str] | None, typer.Option(
        metavar="units=FILE,plans=DIR", help="a variant to compare (repeatable)")] = None,
    speed: Annotated[float, typer.Option(
        min=1, help="travel model: km/h from the unit's station")] = 30.0,
    write_fleet: Annotated[Path | None, typer.Option(
        metavar="FILE", help="write the baseline's fleet (to edit)")] = None,
    html: Annotated[Path | None, typer.Option(
        metavar="FILE", help="the last variant's report with charts")] = None,
) -> None:
    from lifeline.plans import PlanLibrary

    from lifeline_review import demand, rehearsal

    if (histories is None) == (generate is None):
        raise typer.BadParameter("give either --histories DIR or --generate SPEC")
    try:
        if generate:
            spec = demand.DemandSpec.load(generate)
            calls = demand.draw_calls(spec)
        else:
            assert histories is not None
            spec = demand.DemandSpec()
            files = sorted(histories.glob("*.ndjson"))
            if not files:
                errors.fail(f"no *.ndjson histories in {histories}")
            calls = demand.calls_from_histories(read_history(f)[0] for f in files)
        fleet = demand.Fleet.load(units) if units else demand.default_fleet(spec)
        base = rehearsal.baseline(fleet, PlanLibrary.load(plans) if plans else None)
        variants = [base, *(rehearsal.variant(f"variant {n}", base, v)
                            for n, v in enumerate(variant or [], start=1))]
    except (OSError, ValueError) as error:
        errors.fail(str(error))
    if write_fleet:
        write_fleet.write_text(base.fleet.dumps())
    outcomes = []
    with render.progress(f"rehearsing {len(calls)} incidents", len(variants)) as advance:
        for v in variants:
            outcomes += rehearsal.rehearse(calls, [v], speed, include_incidents=bool(html))
            advance(1)
    if html:
        from lifeline_review.pictures import report_html

        last = outcomes[-1]
        html.write_text(report_html(
            last.evaluation, f"Rehearsal of {len(calls)} incidents: {last.variant.name}"))
        for o in outcomes:
            o.evaluation.ClearField("evaluations")
        errors.note(f"wrote {html}")
    if render.wants_json():
        render.print_json([{"variant": o.variant.name, "evaluation": render.as_dict(o.evaluation)}
                           for o in outcomes])
        return

    grid = render.table("measure", *(o.variant.name for o in outcomes))
    for name, value in (
        ("incidents", lambda o: o.evaluation.incidents),
        ("response time p50", lambda o: text.duration(o.phase("response_time").p50)),
        ("response time p90", lambda o: text.duration(o.phase("response_time").p90)),
        ("within the plan's target", lambda o: f"{o.evaluation.percent_within_target:.1f}%"),
        ("never reached", lambda o: o.evaluation.not_reached),
        ("units sent", lambda o: o.units_sent),
        ("units short", lambda o: o.units_short),
        ("coverage (units sent / asked)", lambda o: f"{o.coverage:.1%}"),
        ("declared -> contained p90",
         lambda o: text.duration(o.phase("declared_to_contained").p90)),
    ):
        render.add_row(grid, name, *(value(o) for o in outcomes))
    render.emit(grid)


@app.command(help="List the histories review keeps, every page: active incidents first.")
def histories(limit: Annotated[int, typer.Option(min=0, help=render.LIMIT_HELP)] = 0) -> None:
    def fetch(token: str) -> tuple[Sequence[pb.HistorySummary], str]:
        answer = _stub().ListHistories(pb.ListHistoriesRequest(page=render.page(token)))
        return answer.histories, answer.next_page_token

    def people(found: list[pb.HistorySummary]) -> Table:
        grid = render.table("incident", "events", "state")
        for h in found:
            render.add_row(grid, h.incident_id, h.events, text.state_name(h.state))
        return grid
    render.show_list(render.pages(fetch, "histories", limit), people,
                     order=lambda h: (views.ACTIVE_ORDER.get(h.state, 9), h.incident_id))


cli_revisions.add_commands(app, _stub)


def main(argv: Sequence[str] | None = None) -> None:
    run(app, "review", argv)
