"""Wires resources together: one place that knows every part."""

from __future__ import annotations

import logging
from datetime import timedelta

from lifeline import names
from lifeline import settings as environment
from lifeline.clock import Clock
from lifeline.config import Settings
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, ProtoAggregate
from lifeline.plans import default_library
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.runtime import Runtime
from lifeline.views import ViewRow

from lifeline_resources import consumers
from lifeline_resources.application import ResourcesApp, fleet_unit, rows_for
from lifeline_resources.coverage import Requirement, load_requirements
from lifeline_resources.domain import RoadClosure, Unit
from lifeline_resources.roads import RoadNetwork
from lifeline_resources.server import ResourcesServicer

log = logging.getLogger(__name__)
COVERAGE_CHECK_SECONDS = 30.0


def load_roads() -> RoadNetwork | None:
    """The city's road graph from LIFELINE_ROADS (GeoJSON), if set."""
    path = environment.load().roads
    if path is None:
        return None
    try:
        roads = RoadNetwork.load(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"lifeline-resources: LIFELINE_ROADS={path}: {error}") from None
    log.info("road graph %s: %d segments, %d nodes", roads.name, len(roads.segments),
             len(roads.nodes))
    return roads


def load_coverage() -> list[Requirement]:
    """The city's coverage requirements from LIFELINE_COVERAGE (TOML), if set."""
    path = environment.load().coverage
    if path is None:
        return []
    try:
        requirements = load_requirements(path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"lifeline-resources: LIFELINE_COVERAGE={path}: {error}") from None
    log.info("coverage: %d requirements", len(requirements))
    return requirements


def stale_after() -> timedelta:
    return timedelta(seconds=environment.load().position_stale_seconds)


def build(settings: Settings, clock: Clock | None = None) -> Runtime:
    roads = load_roads()
    app = ResourcesApp(settings.database_url, roads=roads, stale_after=stale_after(),
                       requirements=load_coverage())

    def apply(road: resources_pb2.RoadSegment) -> None:
        if roads is None:
            return
        try:
            if road.closed:
                roads.close(road.id, road.reason)
            else:
                roads.reopen(road.id)
        except InvalidArgument:
            log.warning("road segment %s is closed but not in road graph %s", road.id,
                        roads.name)

    depot_departments: set[str] = set()

    def rows(aggregate: ProtoAggregate) -> list[ViewRow]:
        # The projector keeps the fleet index, the road closures and the departments of
        # depots current.
        if isinstance(aggregate, Unit):
            app.fleet.upsert(fleet_unit(aggregate.view, aggregate.version))
        elif isinstance(aggregate, RoadClosure):
            apply(aggregate.view)
        made = rows_for(aggregate)
        depot_departments.update(r.category for r in made if r.kind == "depot")
        return made

    def registered() -> names.Names:
        kinds, departments = app.fleet.names()
        return {names.UNIT_KIND: kinds, names.DEPARTMENT: departments | depot_departments}

    runtime = Runtime(settings, app, rows, clock)

    async def warm() -> None:
        for unit in await runtime.views.every("unit", resources_pb2.Unit):
            app.fleet.upsert(fleet_unit(unit))
        for road in await runtime.views.every("road", resources_pb2.RoadSegment):
            apply(road)
        for depot in await runtime.views.every("depot", resources_pb2.Depot):
            depot_departments.add(depot.department)
        log.info("fleet index warmed: %d units", len(app.fleet))

    runtime.on_start(warm)
    if app.requirements:
        async def check_coverage() -> None:
            await runtime.write(lambda: app.check_coverage(
                Cause(actor="resources", occurred_at=runtime.now()), runtime.now()))

        # Positions move and go stale between dispatches: look again every so often.
        runtime.every("coverage check", COVERAGE_CHECK_SECONDS, check_coverage)
    servicer = ResourcesServicer(runtime, app)
    # Resources' unit kinds and departments: the plans', the city's, its registry's.
    servicer.names = names.Catalog(
        "resources", (names.UNIT_KIND, names.DEPARTMENT), names.from_plans(default_library()),
        names.configured(settings.configured_names), registered=registered)
    runtime.server.add(resources_pb2_grpc.add_ResourcesServiceServicer_to_server, servicer,
                       resources_pb2.DESCRIPTOR.services_by_name["ResourcesService"].full_name)
    consumers.subscribe(runtime, app)
    return runtime
