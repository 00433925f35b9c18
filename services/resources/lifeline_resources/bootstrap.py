"""Wires resources together: one place that knows every part."""

from __future__ import annotations

from lifeline.clock import Clock
from lifeline.config import Settings
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_resources import consumers
from lifeline_resources.application import ResourcesApp, rows_for
from lifeline_resources.server import ResourcesServicer


def build(settings: Settings, clock: Clock | None = None) -> Runtime:
    app = ResourcesApp(settings.database_url)
    runtime = Runtime(settings, app, rows_for, clock)
    runtime.server.add(resources_pb2_grpc.add_ResourcesServiceServicer_to_server,
                       ResourcesServicer(runtime, app),
                       resources_pb2.DESCRIPTOR.services_by_name["ResourcesService"].full_name)
    consumers.subscribe(runtime, app)
    return runtime
