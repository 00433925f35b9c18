"""The event-sourced Incident dispatch keeps: its commands check the lifecycle rules and
record events, which the fold (`IncidentState`) applies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.utils import register_topic
from google.protobuf.message import Message

from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate, from_timestamp, stable_id, to_timestamp
from lifeline.incident.deadlines import due_deadlines
from lifeline.incident.phases import (
    ACTIVE,
    AFTER_CONTAINMENT,
    DEPLOYED,
    OPEN,
    UNFINISHED_ORDER,
    S,
    grade_name,
    state_name,
)
from lifeline.incident.response import Response
from lifeline.incident.state import IncidentState
from lifeline.incident.v1 import incident_pb2 as pb


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
        last = self.state.last_step()
        if cause.occurred_at < last:
            # Reached only by a caller's command (other causes are clamped first), before it
            # recorded anything: a command's steps share its field time.
            raise RuleViolation("time-runs-forward",
                                f"{field.replace('_', ' ')} at {cause.occurred_at.isoformat()} "
                                f"is before the incident's last step at {last.isoformat()}")
        if field != "order_overdue":
            # A deadline passed before this step is recorded first, at the time it fell due,
            # so a late acknowledgement is still overdue and the history stays in time order.
            self.record_overdue(cause.occurred_at, now)
        # Every step of an incident belongs to the chain its warning (or report) started.
        if not cause.correlation_id:
            cause = replace(cause, correlation_id=self.state.warning_id or str(self.id))
        super().record(field, event, cause, now)

    def _not_before_last_step(self, cause: Cause) -> Cause:
        """Another service's event is never refused (that would wedge the inbox): it keeps
        its field time, clamped so it never goes before the incident's last step."""
        last = self.state.last_step()
        return replace(cause, occurred_at=last) if cause.occurred_at < last else cause

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
        if self.state.state in OPEN and level != self.state.warning_level:
            self.record("warning_level_changed", pb.WarningLevelChanged(
                warning_id=self.state.warning_id, level=level),  # type: ignore[arg-type]
                self._not_before_last_step(cause), now)

    def clear_warning(self, cause: Cause, now: datetime) -> None:
        if self.state.state in OPEN and self.state.warning_level != common_pb2.WARNING_LEVEL_NONE:
            self.record("warning_cleared", pb.WarningCleared(warning_id=self.state.warning_id),
                        self._not_before_last_step(cause), now)

    # ---- response ----

    def declare(self, category: int, hazard_type: str, grade: int, response: Response,
                cause: Cause, now: datetime) -> None:
        """Declare with a grade: the declaring officer takes command and the plan for the
        grade comes into force (units requested, orders issued)."""
        self._require("declare-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be declared")
        self.record("declared", pb.IncidentDeclared(category=category, hazard_type=hazard_type,  # type: ignore[arg-type]
                                                    grade=grade), cause, now)  # type: ignore[arg-type]
        cause = replace(cause, causation_id=f"{self.id}/{self.version}")  # the declaration
        self.record("commander_assigned", pb.CommanderAssigned(commander=cause.actor), cause, now)
        self._put_in_force(grade, response, cause, now)

    def regrade(self, grade: int, response: Response, cause: Cause, now: datetime) -> None:
        """Escalate or de-escalate: escalation adds what the higher grade needs beyond what
        is committed; de-escalation releases the surplus units."""
        self._require("regrade-while-active", ACTIVE,
                      "the grade changes only while the incident is active")
        if not cause.reason.strip():
            raise InvalidArgument("action.reason", "a grade change needs a reason")
        if grade == self.state.grade:
            raise RuleViolation("regrade-changes-grade", f"the incident is already grade "
                                                         f"{grade_name(grade)}")
        previous, state = self.state.grade, self.state.state
        self.record("grade_changed", pb.GradeChanged(from_grade=previous, to_grade=grade),  # type: ignore[arg-type]
                    cause, now)
        cause = replace(cause, causation_id=f"{self.id}/{self.version}")  # the grade change
        if grade < previous and state in AFTER_CONTAINMENT:
            # A flare-up (复燃): the response re-opens before the higher grade's orders go
            # out, so its life-safety orders never stand open on a contained incident.
            self.record("response_reopened", pb.ResponseReopened(
                from_state=state, from_grade=previous, to_grade=grade),  # type: ignore[arg-type]
                cause, now)
        if grade > previous:  # a larger number is less severe: release the surplus
            for kind in {u.unit_kind for u in self.state.deployed_units()}:
                surplus = [u for u in self.state.deployed_units() if u.unit_kind == kind]
                for unit in surplus[response.count(kind):][::-1]:
                    self.record("unit_released", pb.UnitReleased(unit_id=unit.unit_id), cause,
                                now)
        self._put_in_force(grade, response, cause, now)

    def _put_in_force(self, grade: int, response: Response, cause: Cause,
                      now: datetime) -> None:
        if response.plan_id:
            self.record("plan_activated", pb.PlanActivated(
                plan_id=response.plan_id, plan_version=response.plan_version,
                content_hash=response.content_hash, grade=grade,  # type: ignore[arg-type]
                response_time_target_minutes=response.response_time_target_minutes,
                departments_notified=response.notify, units=response.units,
                materials=response.materials), cause, now)
        extra = [pb.UnitRequirement(unit_kind=u.unit_kind,
                                    count=u.count - self.state.committed(u.unit_kind))
                 for u in response.units if u.count > self.state.committed(u.unit_kind)]
        # Materials like units: only what the grade adds to what is already committed.
        materials = [pb.Material(name=m.name, unit=m.unit,
                                 quantity=m.quantity - self.state.committed_material(m.name))
                     for m in response.materials
                     if m.quantity > self.state.committed_material(m.name)]
        if extra or materials:
            request_id = str(stable_id(str(self.id), "request", str(self.version + 1)))
            self.record("resources_requested", pb.ResourcesRequested(
                request_id=request_id, requirements=extra, location=self.state.location,
                materials=materials), cause, now)
        issued = {o.plan_order_id for o in self.state.orders if o.plan_order_id}
        for order in response.orders:
            if order.id not in issued:
                self._issue(order.department, "", order.tier, order.instruction,
                            order.life_safety, order.ack_minutes, order.complete_minutes,
                            cause, now, plan_order_id=order.id)

    def assign_unit(self, request_id: str, unit_id: str, unit_kind: str, distance_km: float,
                    cause: Cause, now: datetime) -> bool:
        """Record a unit resources gave us; False when it changes nothing (a repeat)."""
        unit = self.state.unit(unit_id)
        if self.state.state not in ACTIVE or (unit is not None and not unit.released):
            return False
        self.record("unit_assigned", pb.UnitAssigned(request_id=request_id, unit_id=unit_id,
                                                     unit_kind=unit_kind,
                                                     distance_km=distance_km),
                    self._not_before_last_step(cause), now)
        return True

    def record_shortfall(self, request_id: str, unit_kind: str, missing: int, cause: Cause,
                         now: datetime) -> None:
        if self.state.state in ACTIVE:
            self.record("resource_shortfall", pb.ResourceShortfall(
                request_id=request_id, unit_kind=unit_kind, missing=missing),
                self._not_before_last_step(cause), now)

    def reserve_material(self, request_id: str, depot_id: str, material: pb.Material,
                         distance_km: float, cause: Cause, now: datetime) -> None:
        """Record materials a depot reserved for the incident (resources' answer)."""
        if self.state.state in ACTIVE:
            self.record("material_reserved", pb.MaterialReserved(
                request_id=request_id, depot_id=depot_id, material=material,
                distance_km=distance_km), self._not_before_last_step(cause), now)

    def record_material_shortfall(self, request_id: str, material: pb.Material, cause: Cause,
                                  now: datetime) -> None:
        """No depot could cover a material: material.quantity is what is missing."""
        if self.state.state in ACTIVE:
            self.record("material_shortfall", pb.MaterialShortfall(
                request_id=request_id, material=material), self._not_before_last_step(cause),
                now)

    def record_material_use(self, depot_id: str, material: pb.Material, consumed: bool,
                            cause: Cause, now: datetime) -> bool:
        """A depot's department reported materials the incident held used up (consumed) or
        brought back; recorded while the incident is active (after closure, resources puts
        back what it still held, and the incident takes no more steps)."""
        if self.state.state not in ACTIVE or not material.quantity:
            return False
        field, event_type = (("material_consumed", pb.MaterialConsumed) if consumed
                             else ("material_returned", pb.MaterialReturned))
        self.record(field, event_type(depot_id=depot_id, material=material),
                    self._not_before_last_step(cause), now)
        return True

    def report_unit_status(self, unit_id: str, status: int, cause: Cause, now: datetime) -> bool:
        unit = self.state.unit(unit_id)
        if unit is None or unit.released or unit.status == status or status not in DEPLOYED:
            return False
        self.record("unit_status_reported", pb.UnitStatusReported(unit_id=unit_id, status=status),  # type: ignore[arg-type]
                    self._not_before_last_step(cause), now)
        return True

    def release_unit(self, unit_id: str, cause: Cause, now: datetime) -> bool:
        """Resources freed a unit (it reported available): the incident lets it go."""
        unit = self.state.unit(unit_id)
        if self.state.state not in OPEN or unit is None or unit.released:
            return False
        self.record("unit_released", pb.UnitReleased(unit_id=unit_id),
                    self._not_before_last_step(cause), now)
        return True

    def contain(self, cause: Cause, now: datetime) -> None:
        self._require("contain-after-declare",
                      (S.INCIDENT_STATE_DECLARED, S.INCIDENT_STATE_RESPONDING),
                      "an incident is contained only while it is declared or responding")
        open_life_safety = [o.id for o in self.state.open_orders()
                            if o.life_safety and o.status in UNFINISHED_ORDER]
        if open_life_safety:
            raise RuleViolation("contain-after-life-safety-orders",
                                "life-safety orders still open: " + ", ".join(open_life_safety))
        self.record("contained", pb.IncidentContained(), cause, now)

    # ---- recovery ----

    def start_recovery(self, cause: Cause, now: datetime) -> None:
        self._require("recover-after-contain", (S.INCIDENT_STATE_CONTAINED,),
                      "recovery starts only once the incident is contained")
        self.record("recovery_started", pb.RecoveryStarted(), cause, now)

    def complete_recovery(self, cause: Cause, now: datetime) -> None:
        self._require("recovered-after-recovering", (S.INCIDENT_STATE_RECOVERING,),
                      "recovery completes only after it has started")
        pending = [t.id for t in self.state.recovery_tasks if not t.done]
        if pending:
            raise RuleViolation("recovered-when-tasks-done",
                                "recovery tasks not done: " + ", ".join(pending))
        self.record("recovered", pb.IncidentRecovered(), cause, now)

    def close(self, cause: Cause, now: datetime) -> None:
        self._require("close-after-recovery", (S.INCIDENT_STATE_RECOVERED,),
                      "an incident closes only once it has recovered")
        if self.state.deployed_units():
            raise RuleViolation("close-without-deployed-units", "release every unit first ("
                                + ", ".join(u.unit_id for u in self.state.deployed_units())
                                + " still deployed)")
        if self.state.open_orders():
            raise RuleViolation("close-with-orders-closed", "every order must be verified or "
                                "cancelled first (open: " + ", ".join(
                                    o.id for o in self.state.open_orders()) + ")")
        self.record("closed", pb.IncidentClosed(), cause, now)

    def release_units(self, unit_ids: Sequence[str], cause: Cause, now: datetime) -> None:
        """Send units home (all deployed units when none are named)."""
        self._require("release-while-active", ACTIVE, "units are released from an active "
                                                      "incident")
        deployed = {u.unit_id for u in self.state.deployed_units()}
        for unit_id in unit_ids:
            if unit_id not in deployed:
                raise InvalidArgument("unit_ids", f"unit {unit_id} is not deployed on this "
                                                  "incident")
        for unit_id in dict.fromkeys(unit_ids) or [u.unit_id for u in
                                                   self.state.deployed_units()]:
            self.record("unit_released", pb.UnitReleased(unit_id=unit_id), cause, now)

    # ---- command and orders ----

    def hand_over(self, to_commander: str, cause: Cause, now: datetime) -> None:
        self._require("command-while-active", ACTIVE,
                      "command is handed over only while the incident is active")
        self._require_commander(cause, "hand over command")
        if not to_commander.strip() or to_commander == self.state.commander:
            raise InvalidArgument("to_commander", "name the officer who takes over")
        self.record("commander_assigned", pb.CommanderAssigned(
            commander=to_commander, previous_commander=self.state.commander), cause, now)

    def issue_order(self, department: str, unit_id: str, tier: int, instruction: str,
                    life_safety: bool, ack_minutes: int, complete_minutes: int, cause: Cause,
                    now: datetime) -> str:
        self._require_commander(cause, "issue orders")
        if life_safety and self.state.state not in (S.INCIDENT_STATE_DECLARED,
                                                   S.INCIDENT_STATE_RESPONDING):
            raise RuleViolation("life-safety-before-containment",
                                "a contained incident takes no new life-safety order; "
                                "lives at risk mean it is not contained")
        if unit_id:
            unit = self.state.unit(unit_id)
            if unit is None or unit.released:
                raise RuleViolation("order-to-deployed-unit",
                                    f"unit {unit_id} is not deployed on this incident")
            busy = [o for o in self.state.orders
                    if o.unit_id == unit_id and o.status in UNFINISHED_ORDER]
            if busy:
                raise RuleViolation("no-contradictory-orders",
                                    f"unit {unit_id} already carries order {busy[0].id} "
                                    f"({busy[0].instruction!r}); complete or cancel it first")
        return self._issue(department, unit_id, tier, instruction, life_safety, ack_minutes,
                           complete_minutes, cause, now)

    def _issue(self, department: str, unit_id: str, tier: int, instruction: str,
               life_safety: bool, ack_minutes: int, complete_minutes: int, cause: Cause,
               now: datetime, plan_order_id: str = "") -> str:
        self._require("orders-while-active", ACTIVE, "orders are issued for an active incident")
        order_id = f"O-{len(self.state.orders) + 1}"
        issued = cause.occurred_at
        self.record("order_issued", pb.OrderIssued(
            order_id=order_id, department=department, unit_id=unit_id, tier=tier,  # type: ignore[arg-type]
            instruction=instruction, life_safety=life_safety,
            acknowledge_by=to_timestamp(issued + timedelta(minutes=ack_minutes)),
            complete_by=to_timestamp(issued + timedelta(minutes=complete_minutes)),
            plan_order_id=plan_order_id), cause, now)
        return order_id

    def acknowledge_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._order_step(order_id, (pb.ORDER_STATUS_ISSUED,), "acknowledge-issued-order",
                         "only an order just issued is acknowledged")
        self.record("order_acknowledged", pb.OrderAcknowledged(order_id=order_id), cause, now)

    def report_order_progress(self, order_id: str, note: str, percent: int, cause: Cause,
                              now: datetime) -> None:
        self._order_step(order_id, (pb.ORDER_STATUS_ACKNOWLEDGED, pb.ORDER_STATUS_IN_PROGRESS),
                         "progress-after-acknowledgement",
                         "progress is reported on an acknowledged order")
        if percent > 100:
            raise InvalidArgument("percent", "at most 100")
        self.record("order_progress_reported", pb.OrderProgressReported(
            order_id=order_id, note=note, percent=percent), cause, now)

    def complete_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._order_step(order_id, (pb.ORDER_STATUS_ACKNOWLEDGED, pb.ORDER_STATUS_IN_PROGRESS),
                         "complete-after-acknowledgement",
                         "an order is completed after it was acknowledged")
        self.record("order_completed", pb.OrderCompleted(order_id=order_id), cause, now)

    def verify_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._require_commander(cause, "verify orders")
        self._order_step(order_id, (pb.ORDER_STATUS_COMPLETED,), "verify-completed-order",
                         "only a completed order is verified")
        self.record("order_verified", pb.OrderVerified(order_id=order_id), cause, now)

    def cancel_order(self, order_id: str, cause: Cause, now: datetime) -> None:
        self._require_commander(cause, "cancel orders")
        if not cause.reason.strip():
            raise InvalidArgument("action.reason", "a cancellation needs a reason")
        self._order_step(order_id, (*UNFINISHED_ORDER, pb.ORDER_STATUS_COMPLETED),
                         "cancel-open-order", "only an open order is cancelled")
        self.record("order_cancelled", pb.OrderCancelled(order_id=order_id), cause, now)

    def record_overdue(self, field_now: datetime, now: datetime) -> int:
        """Record each deadline that passed unmet by field time field_now, once; each is
        escalated to the commander. Returns how many were recorded."""
        due = due_deadlines(self.state, field_now)
        for order_id, deadline, due_at in due:
            which = "acknowledgement" if deadline == pb.DEADLINE_ACKNOWLEDGEMENT else "completion"
            # At the time it fell due; clamped only in a history recorded before every step
            # recorded the deadlines passed before it.
            cause = self._not_before_last_step(Cause(
                actor="dispatch", occurred_at=from_timestamp(due_at),
                reason=f"{which} deadline passed", causation_id=f"{self.id}/order/{order_id}"))
            self.record("order_overdue", pb.OrderOverdue(
                order_id=order_id, deadline=deadline, due_at=due_at,  # type: ignore[arg-type]
                escalated_to=self.state.commander), cause, now)
        return len(due)

    def _order_step(self, order_id: str, allowed: Sequence[int], rule: str, why: str) -> None:
        self._require("orders-while-active", ACTIVE, "orders change only on an active incident")
        order = self.state.order(order_id)
        if order is None:
            raise NotFound("order", order_id)
        if order.status not in allowed:
            status = pb.OrderStatus.Name(order.status).removeprefix("ORDER_STATUS_")
            raise RuleViolation(rule, f"{why} (order {order_id} is {status})")

    def _require_commander(self, cause: Cause, what: str) -> None:
        if cause.actor != self.state.commander:
            commander = self.state.commander or "none yet"
            raise RuleViolation("single-command", f"only the commander ({commander}) may "
                                                  f"{what}; {cause.actor} is not")

    # ---- the picture and recovery ----

    def report_situation(self, situation: pb.SituationReported, cause: Cause,
                         now: datetime) -> None:
        self._require("situation-while-open", OPEN, "the situation is reported while the "
                                                    "incident is open")
        self.record("situation_reported", situation, cause, now)

    def add_recovery_task(self, kind: int, owner: str, description: str, cause: Cause,
                          now: datetime) -> str:
        self._require("tasks-during-recovery",
                      (S.INCIDENT_STATE_CONTAINED, S.INCIDENT_STATE_RECOVERING),
                      "recovery tasks are planned once the incident is contained")
        task_id = f"T-{len(self.state.recovery_tasks) + 1}"
        self.record("recovery_task_added", pb.RecoveryTaskAdded(
            task_id=task_id, kind=kind, owner=owner, description=description), cause, now)  # type: ignore[arg-type]
        return task_id

    def complete_recovery_task(self, task_id: str, cause: Cause, now: datetime) -> None:
        self._require("tasks-during-recovery", (S.INCIDENT_STATE_RECOVERING,),
                      "recovery tasks are done while recovering")
        task = self.state.task(task_id)
        if task is None:
            raise NotFound("recovery task", task_id)
        if task.done:
            raise RuleViolation("task-done-once", f"task {task_id} is already done")
        self.record("recovery_task_completed", pb.RecoveryTaskCompleted(task_id=task_id),
                    cause, now)

    def mark_reviewed(self, summary: str, cause: Cause, now: datetime) -> None:
        self._require("review-after-end", (S.INCIDENT_STATE_CLOSED, S.INCIDENT_STATE_DISMISSED),
                      "only a closed or dismissed incident is reviewed")
        if self.state.reviewed:
            raise RuleViolation("reviewed-once", "the incident is already marked reviewed")
        self.record("reviewed", pb.IncidentReviewed(summary=summary), cause, now)

    def dismiss(self, cause: Cause, now: datetime) -> None:
        self._require("dismiss-from-warning", (S.INCIDENT_STATE_WARNING,),
                      "only an incident still in WARNING can be dismissed as a false alarm")
        self.record("dismissed", pb.IncidentDismissed(), cause, now)

    def _require(self, rule: str, allowed: Sequence[int], why: str) -> None:
        if self.state.state not in allowed:
            raise RuleViolation(rule, f"{why} (incident {self.id} is "
                                      f"{state_name(self.state.state)})")


# Histories recorded before the model was split name the aggregate by its old module.
register_topic("lifeline.incident.model:Incident", Incident)
