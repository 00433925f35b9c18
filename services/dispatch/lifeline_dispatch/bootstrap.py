"""Wires dispatch together: one place that knows every part."""

from __future__ import annotations

from lifeline.clock import Clock
from lifeline.config import Settings
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_dispatch import consumers
from lifeline_dispatch.application import DispatchApp, rows_for
from lifeline_dispatch.server import DispatchServicer


def build(settings: Settings, clock: Clock | None = None) -> Runtime:
    app = DispatchApp(settings.database_url)
    runtime = Runtime(settings, app, rows_for, clock)
    runtime.server.add(dispatch_pb2_grpc.add_DispatchServiceServicer_to_server,
                       DispatchServicer(runtime, app),
                       dispatch_pb2.DESCRIPTOR.services_by_name["DispatchService"].full_name)
    consumers.subscribe(runtime, app)
    return runtime
