"""Wires dispatch together: one place that knows every part."""

from __future__ import annotations

from lifeline import settings as environment
from lifeline.clock import Clock, FieldClock
from lifeline.config import Settings
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_dispatch import consumers, deadlines
from lifeline_dispatch.application import DispatchApp, rows_for
from lifeline_dispatch.server import DispatchServicer


def build(settings: Settings, clock: Clock | None = None) -> Runtime:
    app = DispatchApp(settings.database_url)
    runtime = Runtime(settings, app, rows_for, clock)
    # Drills and what-if replays run on the field time their commands carry.
    field = FieldClock(observed=environment.load().field_clock == "observed")
    runtime.server.add(dispatch_pb2_grpc.add_DispatchServiceServicer_to_server,
                       DispatchServicer(runtime, app, field),
                       dispatch_pb2.DESCRIPTOR.services_by_name["DispatchService"].full_name)
    consumers.subscribe(runtime, app, field)
    deadlines.watch(runtime, app, field)
    return runtime
