"""Wires monitor together: one place that knows every part."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from lifeline import names
from lifeline.clock import Clock, FieldClock
from lifeline.config import Settings
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.plans import default_library
from lifeline.runtime import Runtime

from lifeline_monitor import coupling, inbox, outcomes, readings, rosters
from lifeline_monitor.application import MonitorApp, rows_for
from lifeline_monitor.cap import feed
from lifeline_monitor.channels import acknowledging, config, endpoint
from lifeline_monitor.channels.delivery import Deliveries
from lifeline_monitor.channels.links import Claim, Links
from lifeline_monitor.escalation import wiring
from lifeline_monitor.escalation.chains import Chains
from lifeline_monitor.escalation.policy import load_policies
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
    chains = Chains(app, load_policies(), lambda post, at: rosters.holder(app, post, at))
    field = FieldClock(app.engine.observed)
    coupling.subscribe(runtime, app, rules, also=wiring.follow(
        runtime, field, chains.warning_moved,
        lambda name, event, cause, now: feed.published(app, name, event, cause, now)))
    servicer.field_now = wiring.field_clock(runtime, field, app.engine.frame_now)
    wiring.watch(runtime, chains, servicer.field_now)
    channels(runtime, app, servicer.field_now)

    async def expire() -> None:
        # Sensors fall silent and shelving runs out between readings too.
        await runtime.write(lambda: app.expire("monitor", runtime.now()))

    runtime.every("monitor stale sensors and shelving", EXPIRE_EVERY_SECONDS, expire)
    return runtime


def channels(runtime: Runtime[MonitorApp], app: MonitorApp, field_now: Callable[[], datetime | None]
             ) -> None:
    """Deliveries through parties' channels, and the endpoint acknowledgements come back
    to (its own listen address, a free loopback port unless LIFELINE_ACK_LISTEN says)."""
    configured, listen = config.from_env()
    links = Links(configured.ack.secret, configured.ack.link_minutes)
    served = endpoint.Endpoint(listen)
    deliveries = Deliveries(runtime, app, configured, links,
                            configured.ack.base_url or served.url, field_now)
    runtime.every("monitor deliveries", 1.0, deliveries.run)

    async def acknowledge(claim: Claim) -> pb.Warning:
        at = field_now() or runtime.now()
        return await runtime.command(
            lambda view: acknowledging.acknowledge(view, claim, at, runtime.now()),
            lambda warning: warning)

    async def waiting(party: str) -> list[pb.PartyNotification]:
        return await inbox.notifications(runtime.views, party)

    web = endpoint.build_app(links, configured, acknowledge, waiting)
    runtime.every("monitor acknowledgement endpoint", 1.0, lambda: served.serve(web))
