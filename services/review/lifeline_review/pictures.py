"""The evaluation as pictures: one self-contained HTML file (charts embedded as PNG) that an
evaluator opens in any browser, offline.

Charts (matplotlib, drawn off-screen): the distribution of response times against the plans'
targets; p50 and p90 of every phase; the software's own latency beside the human process
times; incidents by grid cell on a map of the cells; and, for one incident, a timeline of its
units and orders.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import h3
from lifeline.common.v1 import common_pb2
from lifeline.events import event_of, from_timestamp, meta_of
from lifeline.incident.v1 import incident_pb2
from lifeline.review.v1 import review_pb2 as pb
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

PHASE_NAMES = {
    "warning_to_declared": "warning -> declared",
    "declared_to_first_order": "declared -> first order",
    "declared_to_first_assignment": "declared -> first unit assigned",
    "response_time": "response time (declared -> first on scene)",
    "declared_to_contained": "declared -> contained",
    "recovery_duration": "recovery",
    "total_duration": "total",
    "recorded_declared_to_requested": "software: declaration -> resources requested",
    "recorded_declared_to_first_assignment": "software: declaration -> first unit assigned",
}


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure drawn off-screen (no pyplot, no display, nothing global)."""
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _minutes(duration: object) -> float:
    return float(duration.ToTimedelta().total_seconds()) / 60  # type: ignore[attr-defined]


def response_chart(evaluation: pb.IncidentsEvaluation) -> str:
    """Histogram of response times, the targets as vertical lines."""
    times = [_minutes(e.response_time) for e in evaluation.evaluations
             if e.HasField("response_time")]
    targets = sorted({e.response_time_target_minutes for e in evaluation.evaluations
                      if e.response_time_target_minutes})
    figure, axes = _figure(8, 4)
    if times:
        axes.hist(times, bins=min(40, max(5, len(times) // 5)), color="#4c72b0")
        axes.set_xlim(0, max(times) * 1.05)
    top = axes.get_ylim()[1]
    for target in targets:
        if times and target <= max(times) * 1.05:
            axes.axvline(target, color="#c44e52", linestyle="--", linewidth=1)
            axes.text(target, top * 0.98, f"{target} min", color="#c44e52", fontsize=7,
                      rotation=90, va="top", ha="right")
    p90 = next((p for p in evaluation.phases if p.phase == "response_time"), None)
    if p90 is not None and p90.count:
        axes.axvline(_minutes(p90.p90), color="black", linewidth=1.5)
        axes.text(_minutes(p90.p90), axes.get_ylim()[1] * 0.8, " p90", fontsize=8)
    axes.set_xlabel("response time: declared -> first unit on scene (minutes)")
    axes.set_ylabel("incidents")
    axes.set_title(f"Response times of {len(times)} incidents; "
                   f"{evaluation.percent_within_target:.1f}% within their plan's target "
                   "(dashed)")
    return _png(figure)


def phases_chart(evaluation: pb.IncidentsEvaluation) -> str:
    shown = [p for p in evaluation.phases if p.count]
    figure, axes = _figure(8, 0.5 + 0.45 * max(1, len(shown)))
    labels = [PHASE_NAMES.get(p.phase, p.phase) for p in shown]
    rows = range(len(shown))
    axes.barh(rows, [_minutes(p.p90) for p in shown], color="#dd8452", label="p90")
    axes.barh(rows, [_minutes(p.p50) for p in shown], color="#4c72b0", label="p50")
    axes.set_yticks(list(rows), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel("minutes (field time)")
    axes.legend(loc="lower right")
    axes.set_title("Phases: p50 and p90 across incidents")
    return _png(figure)


def software_chart(evaluation: pb.IncidentsEvaluation) -> str:
    """The software's share (recorded time) beside the people's (field time), log scale."""
    bars: list[tuple[str, float, str]] = []
    for p in evaluation.software:
        if p.count:
            bars.append((PHASE_NAMES.get(p.phase, p.phase),
                         p.p90.ToTimedelta().total_seconds(), "#55a868"))
    for p in evaluation.phases:
        if p.count and p.phase in ("warning_to_declared", "declared_to_first_order",
                                   "response_time"):
            bars.append((PHASE_NAMES[p.phase], p.p90.ToTimedelta().total_seconds(),
                         "#4c72b0"))
    figure, axes = _figure(8, 0.6 + 0.45 * max(1, len(bars)))
    rows = range(len(bars))
    floor = 1e-4
    axes.barh(rows, [max(b[1], floor) for b in bars], color=[b[2] for b in bars])
    for row, (_, value, _) in zip(rows, bars, strict=True):
        label = ("0 (recorded in the same step)" if value == 0 else
                 f"{value * 1000:.1f} ms" if value < 1 else f"{value / 60:.1f} min")
        axes.text(max(value, floor) * 1.15, row, label, va="center", fontsize=8)
    axes.set_yticks(list(rows), [b[0] for b in bars], fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlim(floor / 2, max([b[1] for b in bars] + [1]) * 30)
    axes.set_xlabel("p90, seconds (log scale): software in green, people and trucks in blue")
    axes.set_title("The software's own latency beside the human process")
    return _png(figure)


def cells_chart(evaluation: pb.IncidentsEvaluation) -> str:
    """A map of the grid cells: darker = more incidents; the number in each cell."""
    cells = [c for c in evaluation.cells if c.grid_cell]
    figure, axes = _figure(7, 6)
    most = max((c.incidents for c in cells), default=1)
    colour = colormaps["OrRd"]
    for c in cells:
        try:
            boundary = h3.cell_to_boundary(c.grid_cell)
            centre = h3.cell_to_latlng(c.grid_cell)
        except (ValueError, TypeError, h3.H3BaseException):
            boundary, centre = [], (c.lat, c.lon)
        if boundary:
            axes.add_patch(Polygon([(lon, lat) for lat, lon in boundary], closed=True,
                                   facecolor=colour(0.15 + 0.85 * c.incidents / most),
                                   edgecolor="grey", linewidth=0.5))
        else:
            axes.scatter([centre[1]], [centre[0]], s=30 + 200 * c.incidents / most,
                         color=colour(0.15 + 0.85 * c.incidents / most))
        axes.text(centre[1], centre[0], str(c.incidents), ha="center", va="center",
                  fontsize=7)
    axes.autoscale_view()
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_xlabel("longitude")
    axes.set_ylabel("latitude")
    axes.set_title(f"Incidents by grid cell ({sum(c.incidents for c in cells)} in "
                   f"{len(cells)} cells)")
    return _png(figure)


@dataclass
class _Bar:
    label: str
    spans: list[tuple[datetime, datetime, str]] = field(default_factory=list)


def timeline_chart(history: Sequence[incident_pb2.IncidentEvent]) -> str:
    """Gantt of one incident: each unit (assigned, en route, on scene until released) and
    each order (issued, acknowledged, completed until verified), the phases as lines."""
    if not history:
        raise ValueError("an empty history has no timeline")
    end = from_timestamp(meta_of(history[-1]).occurred_at)
    units: dict[str, tuple[_Bar, datetime, str]] = {}
    orders: dict[str, tuple[_Bar, datetime, str]] = {}
    bars: list[_Bar] = []
    marks: list[tuple[datetime, str]] = []
    colours = {"assigned": "#c7c7c7", "en route": "#ffbf00", "on scene": "#2ca02c",
               "issued": "#c7c7c7", "acknowledged": "#1f77b4", "completed": "#9467bd"}

    def move(table: dict[str, tuple[_Bar, datetime, str]], key: str, at: datetime,
             phase: str | None) -> None:
        bar, since, current = table[key]
        bar.spans.append((since, at, current))
        if phase is None:
            del table[key]
        else:
            table[key] = (bar, at, phase)

    for event in history:
        kind, body = event_of(event)
        at = from_timestamp(meta_of(event).occurred_at)
        if kind == "unit_assigned":
            bar = _Bar(f"unit {body.unit_id} ({body.unit_kind})")
            bars.append(bar)
            units[body.unit_id] = (bar, at, "assigned")
        elif kind == "unit_status_reported" and body.unit_id in units:
            name = {common_pb2.UNIT_STATUS_EN_ROUTE: "en route",
                    common_pb2.UNIT_STATUS_ON_SCENE: "on scene"}.get(body.status)
            if name:
                move(units, body.unit_id, at, name)
        elif kind == "unit_released" and body.unit_id in units:
            move(units, body.unit_id, at, None)
        elif kind == "order_issued":
            bar = _Bar(f"order {body.order_id} {body.department}")
            bars.append(bar)
            orders[body.order_id] = (bar, at, "issued")
        elif kind in ("order_acknowledged", "order_completed") and body.order_id in orders:
            move(orders, body.order_id, at, kind.removeprefix("order_"))
        elif kind in ("order_verified", "order_cancelled") and body.order_id in orders:
            move(orders, body.order_id, at, None)
        elif kind in ("opened", "reported", "declared", "contained", "recovery_started",
                      "recovered", "closed", "dismissed", "grade_changed"):
            marks.append((at, kind.replace("_", " ")))
    for table in (units, orders):
        for key in list(table):
            move(table, key, end, None)
    start = from_timestamp(meta_of(history[0]).occurred_at)

    def minutes(at: datetime) -> float:
        return (at - start).total_seconds() / 60

    figure, axes = _figure(10, 1.2 + 0.3 * max(1, len(bars)))
    for row, bar in enumerate(bars):
        for since, until, phase in bar.spans:
            axes.barh(row, max(minutes(until) - minutes(since), 0.2), left=minutes(since),
                      color=colours.get(phase, "#7f7f7f"), edgecolor="white", linewidth=0.3)
    axes.set_yticks(range(len(bars)), [b.label for b in bars], fontsize=7)
    axes.invert_yaxis()
    for at, name in marks:
        axes.axvline(minutes(at), color="black", linewidth=0.6, linestyle=":")
        axes.annotate(name, (minutes(at), 1), xycoords=("data", "axes fraction"),
                      rotation=90, fontsize=7, va="bottom", ha="center")
    axes.set_xlabel(f"minutes after {start:%Y-%m-%d %H:%M} UTC (field time)")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axes.legend(handles, ["unit " + n if i < 3 else "order " + n
                          for i, n in enumerate(colours)], fontsize=7, ncol=6,
                loc="upper center", bbox_to_anchor=(0.5, -0.25))
    axes.set_title(f"Incident {meta_of(history[0]).aggregate_id}: units and orders", pad=70)
    return _png(figure)


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _duration(d: object, precise: bool = False) -> str:
    seconds = d.ToTimedelta().total_seconds()  # type: ignore[attr-defined]
    if precise and seconds < 60:
        return f"{seconds * 1000:.1f} ms"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {rest:02d}s" if hours else f"{minutes}m {rest:02d}s"


def report_html(evaluation: pb.IncidentsEvaluation, title: str,
                history: Sequence[incident_pb2.IncidentEvent] = ()) -> str:
    """The whole report: measures as tables, charts as embedded PNG images."""
    charts = [("Response time against the target", response_chart(evaluation)),
              ("Phases", phases_chart(evaluation)),
              ("The software's share", software_chart(evaluation)),
              ("Where", cells_chart(evaluation))]
    if history:
        charts.insert(0, ("One incident's timeline", timeline_chart(history)))
    phases = _table(["phase", "incidents", "p50", "p90", "max"], [
        [PHASE_NAMES.get(p.phase, p.phase), p.count, _duration(p.p50, True),
         _duration(p.p90, True), _duration(p.max, True)]
        for p in (*evaluation.phases, *evaluation.software) if p.count])
    departments = _table(
        ["department", "orders", "acknowledged", "ack p50", "ack p90", "closed",
         "closure rate", "overdue"],
        [[d.department, d.orders_issued, d.orders_acknowledged,
          _duration(d.acknowledgement_p50), _duration(d.acknowledgement_p90), d.orders_closed,
          f"{d.closure_rate:.0%}", d.orders_overdue] for d in evaluation.departments])
    units = _table(["unit kind", "assigned", "short"],
                   [[u.unit_kind, u.assigned, u.short] for u in evaluation.units])
    summary = (f"{evaluation.incidents} incidents; {evaluation.within_target} of "
               f"{evaluation.with_target} reached within their plan's response-time target "
               f"({evaluation.percent_within_target:.1f}%), {evaluation.not_reached} never "
               f"reached; warning precision {evaluation.warning_precision:.0%} "
               f"({evaluation.warnings_confirmed} confirmed, {evaluation.warnings_dismissed} "
               "false alarms)")
    figures = "".join(
        f'<figure><figcaption>{html.escape(name)}</figcaption>'
        f'<img alt="{html.escape(name)}" src="data:image/png;base64,{png}"></figure>'
        for name, png in charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;
text-align:left;font-size:13px}}figure{{margin:1.5em 0}}img{{max-width:100%}}
figcaption{{font-weight:bold;margin-bottom:.3em}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>
<script>
// Marks the page with how many charts the browser decoded and drew (for checks).
window.addEventListener("load", function () {{
  var shown = Array.prototype.filter.call(document.images, function (i) {{
    return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute("data-charts-shown", String(shown.length));
}});
</script>
{figures}<h2>Phases</h2>{phases}<h2>Departments</h2>{departments}<h2>Units</h2>{units}
</body></html>
"""
