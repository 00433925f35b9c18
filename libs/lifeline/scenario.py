"""Scenarios: scripted incidents played through the public gRPC APIs on a simulation clock.

Used by `lifeline demo`, the end-to-end tests and what-if replays. Field times come from the
scenario, so a six-hour flood plays in seconds and its history carries the field times.
"""

from __future__ import annotations

import contextlib
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc

from lifeline import idempotency
from lifeline.clock import SimulationClock
from lifeline.common.v1 import common_pb2
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import to_timestamp
from lifeline.grpcutil import channel_options, client_credentials
from lifeline.incident.aggregate import incident_id_for_warning
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.review.v1 import review_pb2, review_pb2_grpc

T = TypeVar("T")
#: The shipped scenarios: package data (shipped/scenarios links to scenarios/).
SCENARIOS = Path(__file__).resolve().parent / "shipped" / "scenarios"
ORDER_ACTIONS = {"acknowledge": "AcknowledgeOrder", "complete": "CompleteOrder",
                 "verify": "VerifyOrder"}
STEPS = {"contain": "MarkContained", "recover": "StartRecovery",
         "recovered": "CompleteRecovery", "close": "CloseIncident", "dismiss": "DismissIncident"}


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll check() until it returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@dataclass
class Step:
    at: timedelta
    do: str
    args: dict[str, Any]


@dataclass
class Scenario:
    name: str
    start: datetime
    sensors: list[dict[str, Any]]
    units: list[dict[str, Any]]
    steps: list[Step] = field(default_factory=list)
    #: Depots of materials, each with its opening stock.
    depots: list[dict[str, Any]] = field(default_factory=list)
    #: The city's grid (a file of monitor's shipped grids, e.g. "xuhui.toml"), loaded first so
    #: that warnings name whom they reach.
    grid: str = ""
    #: The city's time zone (IANA, e.g. "Asia/Shanghai"): field times are shown in it.
    timezone: str = ""

    @classmethod
    def load(cls, path: Path) -> Scenario:
        data = tomllib.loads(path.read_text())
        steps = []
        for raw in data.get("steps", []):
            hours, minutes = (int(x) for x in raw.pop("at").split(":"))
            steps.append(Step(timedelta(hours=hours, minutes=minutes), raw.pop("do"), raw))
        steps.sort(key=lambda s: s.at)  # stable: steps at one time keep their order
        start = datetime.fromisoformat(data["start"])
        return cls(data["name"], start, data.get("sensors", []), data.get("units", []), steps,
                   data.get("depots", []), data.get("grid", ""), data.get("timezone", ""))


class Badges(Protocol):
    """Where a player gets its credentials: a CA to trust, and a token for each person or
    system the scenario lets act (a dev stack signs them)."""

    @property
    def ca_pem(self) -> bytes | None: ...

    def token(self, name: str, *roles: str, department: str = "") -> str: ...


class _Persona(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
               grpc.StreamUnaryClientInterceptor):
    """Sends the token of whoever the player is acting as."""

    def __init__(self, player: Player) -> None:
        self.player = player

    def _details(self, details: Any) -> Any:
        # A fresh idempotency key per call: gRPC's retries resend it, so a step retried
        # while a replica takes over happens once.
        metadata = [*(details.metadata or ()), (idempotency.HEADER, str(uuid.uuid4()))]
        if self.player.token:
            metadata.append(("authorization", f"Bearer {self.player.token}"))
        # Calls wait for a connection (a takeover), but never longer than the player waits.
        timeout = details.timeout if details.timeout is not None else self.player.timeout
        return details._replace(metadata=metadata, timeout=timeout)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class Player:
    """Plays a scenario against running services, waiting for each effect to show.

    Each step is made by the person or system the scenario names, with that one's role
    (a sensor gateway reads, a duty officer declares, a department acknowledges its
    orders), so the scenario also shows the role matrix at work."""

    def __init__(self, addresses: dict[str, str], badges: Badges, *, tag: str = "",
                 say: Callable[[str], None] = print, timeout: float = 30.0) -> None:
        self.badges = badges
        self._tokens: dict[tuple[str, tuple[str, ...], str], str] = {}
        self.token = ""
        self.acting_as("scenario-observer", "viewer")
        persona = _Persona(self)
        credentials = client_credentials(badges.ca_pem)
        self.channels = {name: grpc.intercept_channel(
            grpc.secure_channel(addr, credentials, options=channel_options(addr)), persona)
                         for name, addr in addresses.items()}
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(self.channels["monitor"])
        self.dispatch = dispatch_pb2_grpc.DispatchServiceStub(self.channels["dispatch"])
        self.resources = resources_pb2_grpc.ResourcesServiceStub(self.channels["resources"])
        self.review = review_pb2_grpc.ReviewServiceStub(self.channels["review"])
        self.tag, self.say, self.timeout = tag, say, timeout
        self.departments: dict[str, str] = {}
        self.incident_id = ""
        self._introduced: set[str] = set()  # warnings whose responsible parties were said

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    def acting_as(self, name: str, *roles: str, department: str = "") -> Player:
        """From now on, calls are made as name (until the next acting_as)."""
        key = (name, roles, department)
        if key not in self._tokens:
            self._tokens[key] = self.badges.token(name, *roles, department=department)
        self.token = self._tokens[key]
        return self

    @contextlib.contextmanager
    def as_(self, name: str, *roles: str, department: str = "") -> Iterator[None]:
        """Calls inside the block are made as name; the observer reads again after it."""
        self.acting_as(name, *roles, department=department)
        try:
            yield
        finally:
            self.acting_as("scenario-observer", "viewer")

    def _id(self, name: str) -> str:
        return f"{name}-{self.tag}" if self.tag else name

    def play(self, scenario: Scenario,
             after_step: Callable[[int, Step], None] | None = None, speed: float = 0) -> str:
        """Set the scene, play every step (after_step runs after each: tests break things),
        wait for review's whole history; `speed`: field time that many times the clock's."""
        clock = SimulationClock(scenario.start)
        self.setup(scenario)
        began, furthest = time.monotonic(), 0.0
        for index, step in enumerate(scenario.steps):
            furthest = max(furthest, step.at.total_seconds() / speed if speed else 0)
            time.sleep(max(0.0, began + furthest - time.monotonic()))
            clock.set(scenario.start + step.at)
            self.run_step(step, clock.now())
            if after_step is not None:
                after_step(index, step)
        self.wait_for_review()
        return self.incident_id

    def setup(self, scenario: Scenario) -> None:
        self.acting_as("installer", "admin")
        if scenario.grid:
            # Developer tooling: the grid's file format is monitor's, read by monitor's code.
            from lifeline_monitor import grid

            shipped = Path(grid.__file__).resolve().parent / "shipped" / "grids"
            request = grid.read_grid_file(shipped / scenario.grid)
            loaded = self.monitor.LoadGrid(request)
            self.say(f"loaded the grid {scenario.grid} (districts: {len(request.districts)}, "
                     f"cells: {len(request.cells)}, H3 resolution {loaded.resolution})")
        for s in scenario.sensors:
            t = s["thresholds"]
            self.monitor.RegisterSensor(monitor_pb2.RegisterSensorRequest(
                id=self._id(s["id"]), kind=s["kind"], hazard=s["hazard"], unit_of_measure=s["unit"],
                location=common_pb2.GeoPoint(lat=s["lat"], lon=s["lon"]),
                thresholds=monitor_pb2.Thresholds(blue=t[0], yellow=t[1], orange=t[2], red=t[3]),
                direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE))
        self.acting_as("fleet-office", "admin")
        for u in scenario.units:
            self.resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
                id=self._id(u["id"]), kind=u["kind"], department=u["department"],
                home=common_pb2.GeoPoint(lat=u["lat"], lon=u["lon"])))
            self.departments[self._id(u["id"])] = u["department"]
        for d in scenario.depots:
            self.resources.RegisterDepot(resources_pb2.RegisterDepotRequest(
                id=self._id(d["id"]), name=d.get("name", ""), department=d["department"],
                position=common_pb2.GeoPoint(lat=d["lat"], lon=d["lon"]),
                stock=[_material(m) for m in d.get("stock", [])]))
            self.departments[self._id(d["id"])] = d["department"]
        self.say(f"registered {len(scenario.sensors)} sensors, {len(scenario.units)} units "
                 f"and {len(scenario.depots)} depots")

    def run_step(self, step: Step, now: datetime) -> None:
        """Play one step. A step with `refused = "<rule>"` must be refused by that rule
        (drills check the rules hold)."""
        rule = step.args.get("refused")
        if rule is None:
            self._run(step, now)
            return
        try:
            self._run(step, now)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION or \
                    rule not in (error.details() or ""):
                raise
            self.say(f"[{now.strftime('%H:%M')}]   refused as expected: {error.details()}")
            return
        raise AssertionError(f"step {step.do} at {step.at} was not refused by {rule}")

    def _run(self, step: Step, now: datetime) -> None:
        a = step.args
        clock = now.strftime("%H:%M")
        if step.do == "read":
            self._read(a, now, clock)
        elif step.do == "declare":
            self._declare(a, now, clock)
        elif step.do == "unit":
            self._unit(a, now, clock)
        elif step.do in STEPS:
            self._lifecycle(step.do, a, now, clock)
        elif step.do in ORDER_ACTIONS:
            self._orders(step.do, a, now, clock)
        elif hasattr(self, f"_{step.do}"):
            getattr(self, f"_{step.do}")(a, now, clock)
        else:
            raise ValueError(f"unknown scenario step {step.do!r}")

    def _incident(self) -> incident_pb2.Incident:
        return self.dispatch.GetIncident(
            dispatch_pb2.GetIncidentRequest(incident_id=self.incident_id)).incident

    def _read(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        readings = [monitor_pb2.Reading(sensor_id=self._id(sid), value=value,
                                        measured_at=to_timestamp(now))
                    for sid, value in a["readings"]]
        with self.as_(a.get("actor", "sensor-gateway"), "sensor-gateway"):
            answer = self.monitor.IngestReadingBatch(
                monitor_pb2.IngestReadingBatchRequest(readings=readings))
        values = ", ".join(f"{sid} {value:g}" for sid, value in a["readings"])
        self.say(f"[{clock}] readings: {values}")
        for warning in answer.warnings:
            level = common_pb2.WarningLevel.Name(warning.level).removeprefix("WARNING_LEVEL_")
            self.say(f"[{clock}]   warning {warning.id} is {level}")
            who = warning.responsible
            if who.grid_officer and warning.id not in self._introduced:
                self._introduced.add(warning.id)
                self.say(f"[{clock}]     reaches {who.cell_name or who.district_name}: grid "
                         f"officer {who.grid_officer}, duty officer {who.duty_officer}, "
                         f"departments {', '.join(who.departments)}")
            if not self.incident_id:
                self.incident_id = str(incident_id_for_warning(warning.id))
            # Dispatch learns of the warning over NATS; wait until the incident shows it.
            wanted = (common_pb2.WARNING_LEVEL_NONE
                      if warning.status == monitor_pb2.WARNING_STATUS_CLEARED else warning.level)
            wait_until(lambda wanted=wanted: self._shows_level(wanted),  # type: ignore[misc]
                       f"the incident to show warning level {wanted}", self.timeout)

    def _shows_level(self, level: int) -> bool:
        try:
            incident = self._incident()
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        # A closed incident no longer follows its warning.
        return incident.warning_level == level or incident.state in (
            incident_pb2.INCIDENT_STATE_CLOSED, incident_pb2.INCIDENT_STATE_DISMISSED)

    def _action(self, a: dict[str, Any], now: datetime, *roles: str,
                department: str = "") -> dispatch_pb2.Action:
        """The step's field time and reason; the player acts as the step's actor (a duty
        officer who may command, unless roles say otherwise) for the call that follows."""
        self.acting_as(a.get("actor", "duty-officer"), *(roles or ("operator", "commander")),
                       department=department)
        return dispatch_pb2.Action(occurred_at=to_timestamp(now), reason=a.get("reason", ""))

    def _declare(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        incident = self.dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
            incident_id=self.incident_id,
            category=incident_pb2.Category.Value(f"CATEGORY_{a['category'].upper()}"),
            hazard_type=a["type"], grade=incident_pb2.Grade.Value(f"GRADE_{a['grade'].upper()}"),
            action=self._action(a, now))).incident
        self.say(f"[{clock}] declared {a['type']} grade {a['grade'].upper()} "
                 f"(incident {incident.id})")
        wanted = sum(r.count for r in incident.requested)
        done = wait_until(lambda: self._answered(wanted), "resources to answer the request",
                          self.timeout)
        for unit in done.units:
            self.say(f"[{clock}]   assigned {unit.unit_id} ({unit.unit_kind}, "
                     f"{unit.distance_km:.1f} km)")
        for short in done.shortfalls:
            self.say(f"[{clock}]   short of {short.count} {short.unit_kind}")

    def _answered(self, wanted: int) -> incident_pb2.Incident | None:
        incident = self._incident()
        got = len(incident.units) + sum(s.count for s in incident.shortfalls)
        return incident if got >= wanted else None

    def _unit(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        incident = self._incident()
        unit = next((u for u in incident.units if u.unit_kind == a["kind"] and not u.released),
                    None)
        if unit is None:
            self.say(f"[{clock}] no {a['kind']} serves the incident; step skipped")
            return
        status = common_pb2.UnitStatus.Value(f"UNIT_STATUS_{a['status'].upper()}")
        with self.as_(a.get("actor", f"crew-{unit.unit_id}"), "operator",
                      department=self.departments.get(unit.unit_id, "")):
            self.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
                id=unit.unit_id, status=status, occurred_at=to_timestamp(now)))
        self.say(f"[{clock}] {unit.unit_id} {a['status'].replace('_', ' ')}")
        wait_until(lambda: any(u.unit_id == unit.unit_id and u.status == status
                               for u in self._incident().units),
                   f"the incident to show {unit.unit_id} {a['status']}", self.timeout)

    def _use(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        """The depot's department reports materials the incident consumed or returned."""
        depot_id = self._id(a["depot"])
        use = resources_pb2.MaterialUse.Value(f"MATERIAL_USE_{a['use'].upper()}")
        materials = [_material(m) for m in a["materials"]]
        before = self._incident()
        field = "materials_consumed" if use == resources_pb2.MATERIAL_USE_CONSUMED \
            else "materials_returned"
        had = sum(m.quantity for m in getattr(before, field))
        with self.as_(a.get("actor", f"keeper-{depot_id}"), "operator",
                      department=self.departments.get(depot_id, "")):
            self.resources.ReportMaterialUse(resources_pb2.ReportMaterialUseRequest(
                depot_id=depot_id, incident_id=self.incident_id, use=use, materials=materials,
                occurred_at=to_timestamp(now)))
        said = ", ".join(f"{m.quantity} {m.unit} {m.name}" for m in materials)
        self.say(f"[{clock}] depot {depot_id}: {said} {a['use']}")
        wanted = had + sum(m.quantity for m in materials)
        wait_until(lambda: sum(m.quantity for m in getattr(self._incident(), field)) >= wanted,
                   f"the incident to show {said} {a['use']}", self.timeout)

    def _lifecycle(self, step: str, a: dict[str, Any], now: datetime, clock: str) -> None:
        rpc = getattr(self.dispatch, STEPS[step])
        incident = rpc(dispatch_pb2.IncidentStepRequest(incident_id=self.incident_id,
                                                        action=self._action(a, now))).incident
        state = incident_pb2.IncidentState.Name(incident.state).removeprefix("INCIDENT_STATE_")
        self.say(f"[{clock}] {step}: incident is {state}")

    def _orders(self, action: str, a: dict[str, Any], now: datetime, clock: str) -> None:
        """Acknowledge, complete or verify every order still waiting for that step (or only
        a department's); departments act for themselves, the commander verifies."""
        wanted = {"acknowledge": (incident_pb2.ORDER_STATUS_ISSUED,),
                  "complete": (incident_pb2.ORDER_STATUS_ACKNOWLEDGED,
                               incident_pb2.ORDER_STATUS_IN_PROGRESS),
                  "verify": (incident_pb2.ORDER_STATUS_COMPLETED,)}[action]
        incident = self._incident()
        done = []
        for order in incident.orders:
            if order.status not in wanted or a.get("department", order.department) != \
                    order.department:
                continue
            if action == "verify":
                step = self._action({"actor": incident.commander}, now, "commander")
            else:
                step = self._action({"actor": f"{order.department}-duty"}, now, "department",
                                    department=order.department)
            getattr(self.dispatch, ORDER_ACTIONS[action])(dispatch_pb2.OrderStepRequest(
                incident_id=self.incident_id, order_id=order.id, action=step))
            done.append(order.id)
        did = {"acknowledge": "acknowledged", "complete": "completed", "verify": "verified"}
        whose = f" for {a['department']}" if "department" in a else ""
        self.say(f"[{clock}] {did[action]} orders {', '.join(done)}" if done else
                 f"[{clock}] no orders{whose} waiting to be {did[action]}")

    def _report(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        incident = self.dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
            hazard=a["hazard"], location=common_pb2.GeoPoint(lat=a["lat"], lon=a["lon"]),
            description=a.get("description", ""), reporter=a.get("reporter", ""),
            action=self._action(a, now))).incident
        self.incident_id = incident.id
        self.say(f"[{clock}] reported by {incident.reporter}: {a.get('description', '')}")

    def _order(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        """The commander's own order, to a department or to a deployed unit of a kind."""
        unit_id = ""
        if "unit_kind" in a:
            unit_id = next(u.unit_id for u in self._incident().units
                           if u.unit_kind == a["unit_kind"] and not u.released)
        tier = incident_pb2.OrderTier.Value(f"ORDER_TIER_{a.get('tier', 'district').upper()}")
        incident = self.dispatch.IssueOrder(dispatch_pb2.IssueOrderRequest(
            incident_id=self.incident_id, department=a["department"], unit_id=unit_id,
            tier=tier, instruction=a["instruction"], life_safety=a.get("life_safety", False),
            acknowledge_within_minutes=a.get("ack", 5),
            complete_within_minutes=a.get("complete", 30), action=self._action(a, now))).incident
        self.say(f"[{clock}] order {incident.orders[-1].id} to {a['department']}"
                 f"{'/' + unit_id if unit_id else ''}: {a['instruction']}")

    def _await_overdue(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        """Wait for dispatch's deadline watch to record an overdue order (field time has
        passed its deadline) before the scenario goes on."""
        order = wait_until(lambda: next((o for o in self._incident().orders if o.overdue),
                                        None), "an order to be recorded overdue", self.timeout)
        self.say(f"[{clock}]   order {order.id} ({order.department}) is overdue; escalated "
                 f"to the commander")

    def _release(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        incident = self.dispatch.ReleaseUnits(dispatch_pb2.ReleaseUnitsRequest(
            incident_id=self.incident_id, unit_ids=[self._id(u) for u in a.get("units", [])],
            action=self._action(a, now))).incident
        self.say(f"[{clock}] released units; "
                 f"{sum(1 for u in incident.units if not u.released)} still deployed")

    def _regrade(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        incident = self.dispatch.RegradeIncident(dispatch_pb2.RegradeIncidentRequest(
            incident_id=self.incident_id,
            grade=incident_pb2.Grade.Value(f"GRADE_{a['grade'].upper()}"),
            action=self._action(a, now))).incident
        self.say(f"[{clock}] regraded to {a['grade'].upper()}: {a.get('reason', '')}")
        wanted = sum(r.count for r in incident.requested)
        wait_until(lambda: self._answered(wanted), "resources to answer the new request",
                   self.timeout)

    def _handover(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        self.dispatch.HandOverCommand(dispatch_pb2.HandOverCommandRequest(
            incident_id=self.incident_id, to_commander=a["to"], action=self._action(a, now)))
        self.say(f"[{clock}] command handed over to {a['to']}")

    def _situation(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        numbers = {k: a.get(k, 0) for k in ("dead", "injured", "missing", "affected",
                                            "evacuated")}
        self.dispatch.ReportSituation(dispatch_pb2.ReportSituationRequest(
            incident_id=self.incident_id, area_km2=a.get("area_km2", 0.0),
            text=a.get("text", ""), action=self._action(a, now), **numbers))
        self.say(f"[{clock}] situation: " + ", ".join(f"{v} {k}" for k, v in numbers.items()
                                                      if v))

    def _task(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        kind = incident_pb2.RecoveryTaskKind.Value(f"RECOVERY_TASK_KIND_{a['kind'].upper()}")
        self.dispatch.AddRecoveryTask(dispatch_pb2.AddRecoveryTaskRequest(
            incident_id=self.incident_id, kind=kind, owner=a["owner"],
            description=a["description"], action=self._action(a, now)))
        self.say(f"[{clock}] recovery task for {a['owner']}: {a['description']}")

    def _tasks_done(self, a: dict[str, Any], now: datetime, clock: str) -> None:
        for task in self._incident().recovery_tasks:
            if not task.done:
                self.dispatch.CompleteRecoveryTask(dispatch_pb2.CompleteRecoveryTaskRequest(
                    incident_id=self.incident_id, task_id=task.id,
                    action=self._action({"actor": task.owner}, now, "department",
                                        department=task.owner)))
                self.say(f"[{clock}] {task.owner} finished {task.id}")

    def history(self) -> list[incident_pb2.IncidentEvent]:
        """What review holds of the incident so far (nothing yet is an empty list)."""
        try:
            return list(self.review.GetIncidentHistory(
                review_pb2.GetIncidentHistoryRequest(incident_id=self.incident_id)))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise

    def wait_for_review(self) -> None:
        version = self._incident().version
        wait_until(lambda: len(self.history()) >= version,
                   f"review to hold all {version} events", self.timeout)


def _material(m: dict[str, Any]) -> resources_pb2.Material:
    return resources_pb2.Material(name=m["name"], quantity=m["quantity"], unit=m["unit"])
