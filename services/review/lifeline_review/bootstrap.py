"""Wires review together: one place that knows every part."""

from __future__ import annotations

from lifeline.clock import Clock
from lifeline.config import Settings
from lifeline.review.v1 import review_pb2, review_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_review import consumers
from lifeline_review.application import ReviewApp, rows_for
from lifeline_review.server import ReviewServicer


def build(settings: Settings, clock: Clock | None = None) -> Runtime:
    app = ReviewApp(settings.database_url)
    runtime = Runtime(settings, app, rows_for, clock)
    runtime.server.add(review_pb2_grpc.add_ReviewServiceServicer_to_server,
                       ReviewServicer(runtime, app),
                       review_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name)
    consumers.subscribe(runtime, app)
    return runtime
