"""How long the software takes from a threshold-crossing reading to the unit assignment
being recorded on the incident, against raw PostgreSQL and NATS round trips measured in
the same run on the same machine.

Each run: a new sensor in a new grid cell reads past its red threshold (t0, taken just
before the gRPC call). Monitor raises a warning, dispatch opens an incident; the bench,
standing in for a duty officer with no human delay, declares it the moment the incident
appears on NATS; resources assigns the nearest ambulance and epidemiology team;
dispatch records UnitAssigned.
The figure is that event's recorded_at minus t0 (all clocks are this machine's). The stack
runs as `lifeline up` does: TLS, verified tokens, a NATS user per service.

    python bench/assignment_latency.py [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import nats
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import EmbeddedNats, EmbeddedPostgres, Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.grpcutil import channel, client_credentials
from lifeline.incident.model import incident_id_for_warning
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline_monitor.domain import grid_cell_of


def summary(name: str, millis: list[float]) -> str:
    ordered = sorted(millis)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"{name:<58} median {statistics.median(ordered):7.2f} ms   p99 {p99:7.2f} ms   "
            f"(n={len(ordered)})")


async def baseline_postgres(url: str, n: int) -> list[float]:
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TEMP TABLE bench (id bigserial PRIMARY KEY, body jsonb)")
    out = []
    for i in range(n):
        t = time.perf_counter()
        await conn.execute("INSERT INTO bench (body) VALUES ($1)", f'{{"i": {i}}}')
        out.append((time.perf_counter() - t) * 1000)
    await conn.close()
    return out


async def baseline_nats(url: str, n: int) -> list[float]:
    nc = await nats.connect(url)  # a bare server: no users, no TLS
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.>"])
    out = []
    for i in range(n):
        t = time.perf_counter()
        await js.publish("bench.x", b"x" * 200, headers={"Nats-Msg-Id": str(i)})
        out.append((time.perf_counter() - t) * 1000)
    await js.delete_stream("BENCH")
    await nc.close()
    return out


async def measure(stack: Stack, runs: int) -> tuple[list[float], list[float], list[float]]:
    def connect(service: str, *roles: str) -> grpc.aio.Channel:
        return channel(stack.address(service), client_credentials(
            stack.ca_pem, stack.token(f"bench-{service}", *roles)))

    monitor = monitor_pb2_grpc.MonitorServiceStub(connect("monitor", "sensor-gateway"))
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(connect("dispatch", "operator",
                                                             "commander"))
    resources = resources_pb2_grpc.ResourcesServiceStub(connect("resources", "admin"))
    # The infectious-disease plan at grade IV needs an ambulance and an epidemiology team.
    for i in range(runs):
        for kind, department in (("ambulance", "medical"), ("epidemiology_team", "health")):
            await resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
                id=f"{kind}-{i}", kind=kind, department=department,
                home=common_pb2.GeoPoint(lat=30.0 + (i % 40) * 0.01,
                                         lon=120.0 + (i // 40) * 0.01)))
    print(f"registered {runs} ambulances and {runs} epidemiology teams", flush=True)

    nc = await bus.connect(stack.nats_url or "", "bench", **stack.nats_login())
    opened: dict[str, asyncio.Future[None]] = {}
    assigned: dict[str, asyncio.Future[incident_pb2.UnitAssigned]] = {}
    loop = asyncio.get_running_loop()

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        event = incident_pb2.IncidentEvent.FromString(msg.data)
        kind = event.WhichOneof("event")
        inner = getattr(event, kind)
        incident_id = inner.meta.aggregate_id
        if kind == "opened" and incident_id in opened and not opened[incident_id].done():
            opened[incident_id].set_result(None)
        elif kind == "unit_assigned" and incident_id in assigned \
                and not assigned[incident_id].done():
            assigned[incident_id].set_result(inner)

    await nc.subscribe("lifeline.dispatch.incident.>", cb=on_event)
    total, to_incident, declare_to_assign = [], [], []
    for run in range(runs):
        lat, lon = 20.0 + (run % 50) * 0.05, 100.0 + (run // 50) * 0.05  # a cell of its own
        sensor = f"bench-{run}"
        await monitor.RegisterSensor(monitor_pb2.RegisterSensorRequest(
            id=sensor, kind="syndromic", hazard="infectious_disease", unit_of_measure="cases",
            location=common_pb2.GeoPoint(lat=lat, lon=lon),
            thresholds=monitor_pb2.Thresholds(blue=1, yellow=2, orange=3, red=4),
            direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE))
        # Known in advance: one incident per warning, one warning per cell and hazard.
        location = common_pb2.GeoPoint(lat=lat, lon=lon)
        warning_id = f"{grid_cell_of(location)}/infectious_disease/1"
        incident_id = str(incident_id_for_warning(warning_id))
        opened[incident_id] = loop.create_future()
        assigned[incident_id] = loop.create_future()
        t0 = datetime.now(UTC)
        answer = await monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(
            readings=[monitor_pb2.Reading(sensor_id=sensor, value=9)]))
        assert answer.warnings[0].id == warning_id
        await asyncio.wait_for(opened[incident_id], 10)
        t_open = datetime.now(UTC)
        await dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
            incident_id=incident_id, category=incident_pb2.CATEGORY_PUBLIC_HEALTH,
            hazard_type="infectious_disease", grade=incident_pb2.GRADE_IV))
        event = await asyncio.wait_for(assigned[incident_id], 10)
        recorded = event.meta.recorded_at.ToDatetime(tzinfo=UTC)
        total.append((recorded - t0).total_seconds() * 1000)
        to_incident.append((t_open - t0).total_seconds() * 1000)
        declare_to_assign.append((recorded - t_open).total_seconds() * 1000)
        if (run + 1) % 20 == 0:
            print(f"  {run + 1}/{runs} runs, median so far {statistics.median(total):.1f} ms",
                  flush=True)
    await nc.close()
    return total, to_incident, declare_to_assign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lifeline-bench-"))
    postgres = EmbeddedPostgres(root / "postgres")
    postgres.start()
    postgres.create_database("bench")
    try:
        with Stack(root / "stack", database_url=postgres.dsn("bench")) as stack:
            print("stack up; measuring baselines", flush=True)
            pg = asyncio.run(baseline_postgres(postgres.dsn("bench"), 1000))
            bare = EmbeddedNats(root / "bare-nats")
            try:
                js = asyncio.run(baseline_nats(bare.start(), 1000))
            finally:
                bare.stop()
            total, to_incident, declare_to_assign = asyncio.run(measure(stack, args.runs))
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(summary("baseline: asyncpg single-row INSERT (autocommit)", pg))
    print(summary("baseline: JetStream publish + PubAck", js))
    print(summary("reading -> incident opened (seen on NATS by the officer)", to_incident))
    print(summary("declare sent -> UnitAssigned recorded", declare_to_assign))
    print(summary("reading -> unit assignment recorded on the incident", total))


if __name__ == "__main__":
    main()
