"""Wires monitor together: one place that knows every part."""

from __future__ import annotations

from lifeline import names
from lifeline.clock import Clock, FieldClock
from lifeline.config import Settings
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.plans import default_library
from lifeline.runtime import Runtime

from lifeline_monitor import coupling, escalation, outcomes, readings
from lifeline_monitor.application import MonitorApp, rows_for
from lifeline_monitor.cap import feed
from lifeline_monitor.server import MonitorServicer

EXPIRE_EVERY_SECONDS = 1.0


def build(settings: Settings, clock: Clock | None = None) -> Runtime:
    app = MonitorApp(settings.database_url)
    app.grid_resolution = settings.grid_resolution
    runtime = Runtime(settings, app, rows_for, clock)
    readings.register()
    servicer = MonitorServicer(runtime, app)
    rules = coupling.load_rules()
    # Monitor's hazards: the plans', the coupled-risk rules', the city's, its sensors'.
    servicer.names = names.Catalog(
        "monitor", (names.HAZARD,), names.from_plans(default_library()),
        {names.HAZARD: {h for r in rules for h in (r.hazard, *(c.hazard for c in r.conditions))}},
        names.configured(settings.configured_names), registered=app.sensor_names)
    runtime.server.add(monitor_pb2_grpc.add_MonitorServiceServicer_to_server, servicer,
                       monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name)
    outcomes.subscribe(runtime, app)
    chains = escalation.Chains(app, escalation.load_policies())
    field = FieldClock(app.engine.observed)
    coupling.subscribe(runtime, app, rules, also=escalation.follow(
        runtime, field, chains.warning_moved,
        lambda name, event, cause, now: feed.published(app, name, event, cause, now)))
    servicer.field_now = escalation.field_clock(runtime, field, app.engine.frame_now)
    escalation.watch(runtime, chains, servicer.field_now)

    async def expire() -> None:
        # Sensors fall silent and shelving runs out between readings too.
        await runtime.write(lambda: app.expire("monitor", runtime.now()))

    runtime.every("monitor stale sensors and shelving", EXPIRE_EVERY_SECONDS, expire)
    return runtime
