"""The Incident: one model that dispatch writes and review replays.

`IncidentState` is a pure fold over `lifeline.incident.v1.IncidentEvent` messages; review
uses it alone to replay a history. `Incident` is the event-sourced aggregate dispatch keeps:
its commands check the lifecycle rules and record events, which the same fold applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from google.protobuf.message import Message

from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, meta_of, stable_id
from lifeline.incident.v1 import incident_pb2 as pb

S = pb.IncidentState
ACTIVE = (S.INCIDENT_STATE_DECLARED, S.INCIDENT_STATE_RESPONDING, S.INCIDENT_STATE_CONTAINED,
          S.INCIDENT_STATE_RECOVERING, S.INCIDENT_STATE_RECOVERED)
OPEN = (S.INCIDENT_STATE_WARNING, *ACTIVE)
DEPLOYED = (common_pb2.UNIT_STATUS_ASSIGNED, common_pb2.UNIT_STATUS_EN_ROUTE,
            common_pb2.UNIT_STATUS_ON_SCENE)


def state_name(state: int) -> str:
    return pb.IncidentState.Name(state).removeprefix("INCIDENT_STATE_")  # type: ignore[arg-type]


class IncidentState:
    """The incident as its history so far says it is."""

    def __init__(self) -> None:
        self.view = pb.Incident()

    @classmethod
    def replay(cls, events: Iterable[pb.IncidentEvent]) -> IncidentState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    def unit(self, unit_id: str) -> pb.IncidentUnit | None:
        """The unit's latest stint with the incident (a released unit may come back)."""
        return next((u for u in reversed(self.view.units) if u.unit_id == unit_id), None)

    def deployed_units(self) -> list[pb.IncidentUnit]:
        return [u for u in self.view.units if not u.released]

    def apply(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        meta = meta_of(wrapper)
        v = self.view
        if meta.sequence != v.version + 1:
            raise ValueError(f"event {meta.sequence} of incident {meta.aggregate_id} "
                             f"follows event {v.version}: the history has a gap or a repeat")
        v.version = meta.sequence
        v.updated_at.CopyFrom(meta.occurred_at)
        at = meta.occurred_at
        if field == "opened":
            v.id = meta.aggregate_id
            v.state = S.INCIDENT_STATE_WARNING
            v.hazard, v.warning_id, v.grid_cell = event.hazard, event.warning_id, event.grid_cell
            v.warning_level = event.level
            v.location.CopyFrom(event.location)
            v.opened_at.CopyFrom(at)
        elif field == "reported":
            v.id = meta.aggregate_id
            v.state = S.INCIDENT_STATE_WARNING
            v.hazard, v.grid_cell = event.hazard, event.grid_cell
            v.description, v.reporter = event.description, event.reporter
            v.location.CopyFrom(event.location)
            v.opened_at.CopyFrom(at)
        elif field == "warning_level_changed":
            v.warning_level = event.level
        elif field == "warning_cleared":
            v.warning_level = common_pb2.WARNING_LEVEL_NONE
        elif field == "declared":
            v.state = S.INCIDENT_STATE_DECLARED
            v.category, v.hazard_type, v.grade = event.category, event.hazard_type, event.grade
            v.declared_at.CopyFrom(at)
        elif field == "resources_requested":
            for need in event.requirements:
                _add(v.requested, need.unit_kind, need.count)
        elif field == "unit_assigned":
            if v.state == S.INCIDENT_STATE_DECLARED:
                v.state = S.INCIDENT_STATE_RESPONDING
            v.units.add(unit_id=event.unit_id, unit_kind=event.unit_kind,
                        status=common_pb2.UNIT_STATUS_ASSIGNED, assigned_at=at,
                        distance_km=event.distance_km)
        elif field == "resource_shortfall":
            _add(v.shortfalls, event.unit_kind, event.missing)
        elif field == "unit_status_reported":
            unit = self.unit(event.unit_id)
            assert unit is not None
            unit.status = event.status
            if event.status == common_pb2.UNIT_STATUS_ON_SCENE and not unit.HasField("on_scene_at"):
                unit.on_scene_at.CopyFrom(at)
        elif field == "unit_released":
            unit = self.unit(event.unit_id)
            assert unit is not None
            unit.released = True
            unit.status = common_pb2.UNIT_STATUS_AVAILABLE
        elif field == "contained":
            v.state = S.INCIDENT_STATE_CONTAINED
            v.contained_at.CopyFrom(at)
        elif field == "recovery_started":
            v.state = S.INCIDENT_STATE_RECOVERING
            v.recovery_started_at.CopyFrom(at)
        elif field == "recovered":
            v.state = S.INCIDENT_STATE_RECOVERED
            v.recovered_at.CopyFrom(at)
        elif field == "closed":
            v.state = S.INCIDENT_STATE_CLOSED
            v.closed_at.CopyFrom(at)
        elif field == "dismissed":
            v.state = S.INCIDENT_STATE_DISMISSED
            v.dismissed_at.CopyFrom(at)
        # Event types this reader does not know yet change nothing (forward compatibility).


def _add(requirements: Any, unit_kind: str, count: int) -> None:
    for r in requirements:
        if r.unit_kind == unit_kind:
            r.count += count
            return
    requirements.add(unit_kind=unit_kind, count=count)


def parse_incident_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidArgument("incident_id", f"{text!r} is not an incident id (a UUID)") from None


def incident_id_for_warning(warning_id: str) -> UUID:
    """One incident per warning, however often the warning is delivered."""
    return stable_id("incident-for-warning", warning_id)


class Incident(ProtoAggregate):
    """The event-sourced incident: commands check the rules, events change the state."""

    EVENT_TYPE = pb.IncidentEvent
    CONTINUES_ORIGIN_TRACE = True

    def when(self, wrapper: Message) -> None:
        if not hasattr(self, "state"):
            self.state = IncidentState()
        self.state.apply(wrapper)

    @property
    def view(self) -> pb.Incident:
        return self.state.view

    def record(self, field: str, event: Message, cause: Cause, now: datetime) -> None:
        # Every step of an incident belongs to the chain its warning (or report) started.
        if not cause.correlation_id:
            cause = replace(cause, correlation_id=self.view.warning_id or str(self.id))
        super().record(field, event, cause, now)

    # ---- opening ----

    @classmethod
    def open_for_warning(cls, warning_id: str, hazard: str, level: int,
                         location: common_pb2.GeoPoint, grid_cell: str, cause: Cause,
                         now: datetime) -> Incident:
        event = pb.IncidentOpened(warning_id=warning_id, hazard=hazard, level=level,  # type: ignore[arg-type]
                                  location=location, grid_cell=grid_cell)
        cause = replace(cause, correlation_id=cause.correlation_id or warning_id)
        return cls.start(incident_id_for_warning(warning_id), "opened", event, cause, now)

    @classmethod
    def report(cls, incident_id: UUID, hazard: str, location: common_pb2.GeoPoint,
               description: str, reporter: str, grid_cell: str, cause: Cause,
               now: datetime) -> Incident:
        event = pb.IncidentReported(hazard=hazard, location=location, description=description,
                                    reporter=reporter, grid_cell=grid_cell)
        cause = replace(cause, correlation_id=cause.correlation_id or str(incident_id))
        return cls.start(incident_id, "reported", event, cause, now)

    # ---- the warning behind it ----

    def change_warning_level(self, level: int, cause: Cause, now: datetime) -> None:
        if self.view.state in OPEN and level != self.view.warning_level:
            self.record("warning_level_changed", pb.WarningLevelChanged(
                warning_id=self.view.warning_id, level=level), cause, now)  # type: ignore[arg-type]

    def clear_warning(self, cause: Cause, now: datetime) -> None:
        if self.view.state in OPEN and self.view.warning_level != common_pb2.WARNING_LEVEL_NONE:
            self.record("warning_cleared", pb.WarningCleared(warning_id=self.view.warning_id),
                        cause, now)

    # ---- response ----

    def declare(self, category: int, hazard_type: str, grade: int,
                requirements: Sequence[pb.UnitRequirement], cause: Cause, now: datetime) -> None:
        self._require("declare-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be declared")
        self.record("declared", pb.IncidentDeclared(category=category, hazard_type=hazard_type,  # type: ignore[arg-type]
                                                    grade=grade), cause, now)  # type: ignore[arg-type]
        if requirements:
            request_id = str(stable_id(str(self.id), "request", str(self.version + 1)))
            self.record("resources_requested", pb.ResourcesRequested(
                request_id=request_id, requirements=requirements, location=self.view.location),
                Cause(cause.actor, cause.occurred_at, cause.reason, cause.correlation_id,
                      f"{self.id}/{self.version}"), now)

    def assign_unit(self, request_id: str, unit_id: str, unit_kind: str, distance_km: float,
                    cause: Cause, now: datetime) -> bool:
        """Record a unit resources gave us; False when it changes nothing (a repeat)."""
        unit = self.state.unit(unit_id)
        if self.view.state not in ACTIVE or (unit is not None and not unit.released):
            return False
        self.record("unit_assigned", pb.UnitAssigned(request_id=request_id, unit_id=unit_id,
                                                     unit_kind=unit_kind,
                                                     distance_km=distance_km), cause, now)
        return True

    def record_shortfall(self, request_id: str, unit_kind: str, missing: int, cause: Cause,
                         now: datetime) -> None:
        if self.view.state in ACTIVE:
            self.record("resource_shortfall", pb.ResourceShortfall(
                request_id=request_id, unit_kind=unit_kind, missing=missing), cause, now)

    def report_unit_status(self, unit_id: str, status: int, cause: Cause, now: datetime) -> bool:
        unit = self.state.unit(unit_id)
        if unit is None or unit.released or unit.status == status or status not in DEPLOYED:
            return False
        self.record("unit_status_reported", pb.UnitStatusReported(unit_id=unit_id, status=status),  # type: ignore[arg-type]
                    cause, now)
        return True

    def release_unit(self, unit_id: str, cause: Cause, now: datetime) -> bool:
        """Resources freed a unit (it reported available): the incident lets it go."""
        unit = self.state.unit(unit_id)
        if self.view.state not in OPEN or unit is None or unit.released:
            return False
        self.record("unit_released", pb.UnitReleased(unit_id=unit_id), cause, now)
        return True

    def contain(self, cause: Cause, now: datetime) -> None:
        self._require("contain-after-declare",
                      (S.INCIDENT_STATE_DECLARED, S.INCIDENT_STATE_RESPONDING),
                      "an incident is contained only while it is declared or responding")
        self.record("contained", pb.IncidentContained(), cause, now)

    # ---- recovery ----

    def start_recovery(self, cause: Cause, now: datetime) -> None:
        self._require("recover-after-contain", (S.INCIDENT_STATE_CONTAINED,),
                      "recovery starts only once the incident is contained")
        self.record("recovery_started", pb.RecoveryStarted(), cause, now)

    def complete_recovery(self, cause: Cause, now: datetime) -> None:
        self._require("recovered-after-recovering", (S.INCIDENT_STATE_RECOVERING,),
                      "recovery completes only after it has started")
        self.record("recovered", pb.IncidentRecovered(), cause, now)

    def close(self, cause: Cause, now: datetime) -> None:
        self._require("close-after-recovery", (S.INCIDENT_STATE_RECOVERED,),
                      "an incident closes only once it has recovered")
        for unit in self.state.deployed_units():
            self.record("unit_released", pb.UnitReleased(unit_id=unit.unit_id), cause, now)
        self.record("closed", pb.IncidentClosed(), cause, now)

    def dismiss(self, cause: Cause, now: datetime) -> None:
        self._require("dismiss-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be dismissed as a false alarm")
        self.record("dismissed", pb.IncidentDismissed(), cause, now)

    def _require(self, rule: str, allowed: Sequence[int], why: str) -> None:
        if self.view.state not in allowed:
            raise RuleViolation(rule, f"{why} (incident {self.id} is "
                                      f"{state_name(self.view.state)})")
