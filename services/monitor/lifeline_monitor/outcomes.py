"""Warning outcomes: was a warning borne out? Monitor follows dispatch's incidents over NATS.
An incident opened from a warning awaits its outcome; declared, the warning is confirmed;
dismissed, it was a false alarm. Precision (confirmed / (confirmed + false alarms)) per
sensor, hazard and cell is what the field measures early warning by (pilots: 89 to 92%).

Each outcome is an aggregate of its own, keyed by the incident (dispatch's declared and
dismissed events name only the incident), recorded in the same transaction as the inbox's
tracking of the dispatch event, so a redelivery changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Recording
from google.protobuf.message import Message
from lifeline.bus import OFF_PATH_LINGER_SECONDS
from lifeline.common.v1 import common_pb2
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, meta_of, stable_id
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import Taking
from lifeline.views import ViewRow, Views

from lifeline_monitor.domain import HazardWatch, watch_id_of

if TYPE_CHECKING:
    from lifeline.runtime import Runtime
    from lifeline.store import ServiceApplication

#: Every event of dispatch's incidents, so each incident's versions arrive in order; only
#: these are handled.
DISPATCH_SUBJECTS = ("lifeline.dispatch.incident.>",)
DISPATCH_HANDLED = ("lifeline.dispatch.incident.opened", "lifeline.dispatch.incident.declared",
                    "lifeline.dispatch.incident.dismissed")
DECISIONS = {"declared": pb.WARNING_OUTCOME_CONFIRMED,
             "dismissed": pb.WARNING_OUTCOME_FALSE_ALARM}
DECIDED = [pb.WarningOutcome.Name(o) for o in DECISIONS.values()]


def outcome_id_of(incident_id: str) -> UUID:
    return stable_id("warning-outcome", incident_id)


class Outcome(ProtoAggregate):
    """The outcome of one warning's incident."""

    EVENT_TYPE = pb.OutcomeEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        if field == "awaited":
            self.view = pb.OutcomeRecord(incident_id=event.incident_id,
                                         warning_id=event.warning_id, hazard=event.hazard,
                                         grid_cell=event.grid_cell)
        elif field == "decided":
            self.view.outcome = event.outcome
            self.view.sensor_ids[:] = event.sensor_ids
            self.view.decided_at.CopyFrom(meta_of(wrapper).occurred_at)

    @classmethod
    def await_for(cls, opened: incident_pb2.IncidentOpened, cause: Cause,
                  now: datetime) -> Outcome:
        incident_id = opened.meta.aggregate_id
        return cls.start(outcome_id_of(incident_id), "awaited", pb.OutcomeAwaited(
            incident_id=incident_id, warning_id=opened.warning_id, hazard=opened.hazard,
            grid_cell=opened.grid_cell), cause, now)

    def decide(self, outcome: int, sensor_ids: Iterable[str], cause: Cause,
               now: datetime) -> bool:
        """Record the outcome once; an incident is declared or dismissed, never both."""
        if self.view.outcome != pb.WARNING_OUTCOME_UNSPECIFIED:
            return False
        self.record("decided", pb.OutcomeDecided(
            incident_id=self.view.incident_id, warning_id=self.view.warning_id,
            outcome=outcome, sensor_ids=sorted(sensor_ids)), cause, now)  # type: ignore[arg-type]
        return True


def sensors_behind(app: ServiceApplication, warning_id: str) -> list[str]:
    parts = warning_id.split("/")
    if len(parts) != 3:
        return []
    watch = app.find(HazardWatch, watch_id_of(parts[0], parts[1]))
    return watch.sensors_behind(warning_id) if watch is not None else []


def incident_moved(app: ServiceApplication, field: str, event: Any, cause: Cause,
                   now: datetime, taking: Taking) -> list[Recording]:
    """Dispatch opened, declared or dismissed an incident."""
    incident_id = event.meta.aggregate_id
    outcome = app.find(Outcome, outcome_id_of(incident_id))
    if field == "opened":
        if outcome is None and event.warning_id:
            return app.record(Outcome.await_for(event, cause, now), taking=taking)
        return app.record(taking=taking)
    if outcome is None:  # a reported incident: no warning to mark
        return app.record(taking=taking)
    sensors = sensors_behind(app, outcome.view.warning_id)
    if outcome.decide(DECISIONS[field], sensors, cause, now):
        return app.record(outcome, taking=taking)
    return app.record(taking=taking)


def cause_from(meta: common_pb2.EventMeta) -> Cause:
    """Recorded at the dispatch event's field time, by its actor, linked back to it."""
    return Cause(actor=meta.actor or "dispatch", occurred_at=from_timestamp(meta.occurred_at),
                 correlation_id=meta.correlation_id,
                 causation_id=f"{meta.aggregate_id}/{meta.sequence}")


def subscribe(rt: Runtime, app: ServiceApplication) -> None:
    async def on_incident(subject: str, wrapper: Message, taking: Taking) -> None:
        field, event = event_of(wrapper)
        cause = cause_from(event.meta)
        await rt.write(lambda: (None, incident_moved(app, field, event, cause, rt.now(),
                                                     taking)))

    rt.consume("dispatch", DISPATCH_SUBJECTS, [incident_pb2.IncidentEvent], on_incident,
               DISPATCH_HANDLED, linger=OFF_PATH_LINGER_SECONDS)


def rows_for(outcome: Outcome) -> list[ViewRow]:
    v = outcome.view
    return [ViewRow("outcome", v.warning_id, v, status=pb.WarningOutcome.Name(v.outcome),
                    category=v.hazard)]


def precision(records: Iterable[pb.OutcomeRecord], *, sensor_id: str = "", hazard: str = "",
              grid_cell: str = "") -> pb.GetPrecisionResponse:
    """Confirmed and false warnings overall and per sensor, hazard and cell, of the decided
    outcomes that match every filter given."""
    counts: dict[str, dict[str, list[int]]] = {
        "sensor": defaultdict(lambda: [0, 0]), "hazard": defaultdict(lambda: [0, 0]),
        "cell": defaultdict(lambda: [0, 0])}
    overall = [0, 0]
    for r in records:
        if r.outcome == pb.WARNING_OUTCOME_UNSPECIFIED:
            continue
        if (sensor_id and sensor_id not in r.sensor_ids) or (hazard and r.hazard != hazard) \
                or (grid_cell and r.grid_cell != grid_cell):
            continue
        slot = 0 if r.outcome == pb.WARNING_OUTCOME_CONFIRMED else 1
        overall[slot] += 1
        counts["hazard"][r.hazard][slot] += 1
        counts["cell"][r.grid_cell][slot] += 1
        for sensor in r.sensor_ids:
            counts["sensor"][sensor][slot] += 1

    def figure(key: str, confirmed: int, false_alarms: int) -> pb.Precision:
        p = pb.Precision(key=key, confirmed=confirmed, false_alarms=false_alarms)
        if confirmed + false_alarms:
            p.precision = confirmed / (confirmed + false_alarms)
        return p

    def table(by: str) -> list[pb.Precision]:
        return [figure(key, *pair) for key, pair in sorted(counts[by].items())]

    return pb.GetPrecisionResponse(overall=figure("", *overall), by_sensor=table("sensor"),
                                   by_hazard=table("hazard"), by_cell=table("cell"))


async def decided(views: Views, hazard: str = "") -> list[pb.OutcomeRecord]:
    """Every decided outcome (of one hazard, if given), from the read model."""
    records: list[pb.OutcomeRecord] = []
    token = ""
    while True:
        page, token = await views.page("outcome", pb.OutcomeRecord, page_size=1000,
                                       page_token=token, statuses=DECIDED, category=hazard)
        records.extend(page)
        if not token:
            return records


async def with_outcomes(views: Views, warnings: list[pb.Warning]) -> list[pb.Warning]:
    """The warnings with the outcome of their incident, where it is known."""
    if not warnings:
        return warnings
    async with views.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT key, doc FROM {views.table} WHERE kind = 'outcome' "
                                "AND key = ANY($1::text[])", [w.id for w in warnings])
    known = {r["key"]: pb.OutcomeRecord.FromString(r["doc"]) for r in rows}
    for warning in warnings:
        record = known.get(warning.id)
        if record is not None:
            warning.outcome = record.outcome
            warning.incident_id = record.incident_id
    return warnings
