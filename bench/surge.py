"""Commands when the whole city calls at once, next to what the same PostgreSQL does raw.

16 call-takers report incidents concurrently with ReportIncident (commands/s), beside
16 connections each inserting single rows in their own transactions on the same
PostgreSQL (transactions/s). Then the same reports through ReportIncidents, in batches
(reports/s). Then a fleet of 9,900 units registered one by one (16 calls at a time, as
bench/assignment_latency.py grows its fleet) beside one RegisterUnits call of 9,900 more.
Then a disaster: 1,000 incidents across the city declared at once against a fleet of
6,000 units over the same city (declare
-> first unit assigned, as the incident watch shows it, beside one incident declared on the
idle system), and 5,000 cells turning red in one reading batch (until every incident is
opened, beside 5,000 raw INSERT transactions and 5,000 JetStream publishes).
The stack runs as `lifeline up` does: TLS, verified tokens, a NATS user per service.

    python bench/surge.py [--phases commands,declare,red] [--callers 16] [--reports 2000]
                          [--batch 100] [--units 9900] [--declare 1000] [--cells 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import grpc
import h3
import nats
from benchkit import embedded_postgres, percentile
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.embedded import EmbeddedNats
from lifeline.grpcutil import channel, client_credentials
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc

#: The city the fleet covers (south-west corner, and its size in degrees).
SOUTH, WEST, TALL, WIDE = 30.0, 120.0, 0.45, 0.52


def spread(n: int, a: int, b: int) -> common_pb2.GeoPoint:
    """The n-th of points scattered evenly over the city (a, b: primes of the scatter)."""
    return common_pb2.GeoPoint(lat=SOUTH + (n * a % 10007) / 10007 * TALL,
                               lon=WEST + (n * b % 10009) / 10009 * WIDE)


#: Kinds and departments the shipped plans know (a gas leak of grade IV asks for a gas
#: repair crew and a police car).
FLEET_MIX = (("ambulance", "medical"), ("fire_engine", "fire"), ("police_car", "police"),
             ("gas_repair_crew", "utilities"))


def report(n: int) -> dispatch_pb2.ReportIncidentRequest:
    return dispatch_pb2.ReportIncidentRequest(hazard="gas_leak", location=spread(n, 4001, 6007),
                                              description=f"surge call {n}")


def unit(prefix: str, n: int) -> resources_pb2.RegisterUnitRequest:
    kind, department = FLEET_MIX[n % len(FLEET_MIX)]
    return resources_pb2.RegisterUnitRequest(
        id=f"{prefix}-{n}", kind=kind, department=department,
        home=spread(n, 7919, 104729))


async def concurrently(callers: int, items: int, one: Callable[[int], Awaitable[object]]
                       ) -> float:
    """Run one(i) for every item, `callers` at a time; the seconds it took."""
    next_item = iter(range(items))

    async def caller() -> None:
        for i in next_item:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - started


async def raw_inserts(dsn: str, callers: int, rows: int) -> float:
    """Single-row INSERTs, each its own transaction, over `callers` connections."""
    pool = await asyncpg.create_pool(dsn, min_size=callers, max_size=callers)
    await pool.execute("CREATE TABLE surge_baseline (id bigserial PRIMARY KEY, body jsonb)")

    async def insert(i: int) -> None:
        await pool.execute("INSERT INTO surge_baseline (body) VALUES ($1)", f'{{"i": {i}}}')

    seconds = await concurrently(callers, rows, insert)
    await pool.execute("DROP TABLE surge_baseline")
    await pool.close()
    return seconds


class Callers:
    def __init__(self, stack: Stack) -> None:
        def connect(service: str, *roles: str) -> grpc.aio.Channel:
            return channel(stack.address(service), client_credentials(
                stack.ca_pem, stack.token(f"bench-{service}", *roles)))

        self.dispatch = dispatch_pb2_grpc.DispatchServiceStub(connect("dispatch", "call-taker"))
        self.commander = dispatch_pb2_grpc.DispatchServiceStub(
            connect("dispatch", "commander", "operator"))
        self.resources = resources_pb2_grpc.ResourcesServiceStub(connect("resources", "admin"))
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(connect("monitor", "admin"))
        self.gateway = monitor_pb2_grpc.MonitorServiceStub(
            connect("monitor", "sensor-gateway"))

    async def report_one_by_one(self, callers: int, reports: int) -> float:
        async def one(n: int) -> None:
            await self.dispatch.ReportIncident(report(n), timeout=120)

        return await concurrently(callers, reports, one)

    async def report_in_batches(self, callers: int, reports: int, batch: int) -> float:
        batches = -(-reports // batch)

        async def one(b: int) -> None:
            answer = await self.dispatch.ReportIncidents(dispatch_pb2.ReportIncidentsRequest(
                reports=[report(n) for n in range(b * batch, min(reports, (b + 1) * batch))]),
                timeout=120)
            assert answer.incidents, "ReportIncidents answered no incidents"

        return await concurrently(callers, batches, one)

    async def register_one_by_one(self, units: int) -> float:
        async def one(n: int) -> None:
            await self.resources.RegisterUnit(unit("solo", n), timeout=120)

        return await concurrently(16, units, one)

    async def register_at_once(self, units: int) -> float:
        started = time.perf_counter()
        answer = await self.resources.RegisterUnits(resources_pb2.RegisterUnitsRequest(
            units=[unit("bulk", n) for n in range(units)]), timeout=600)
        seconds = time.perf_counter() - started
        assert answer.registered == units, f"registered {answer.registered} of {units}"
        return seconds


    async def declare_at_once(self, count: int) -> tuple[list[float], list[float], float]:
        """Report `count` incidents, then declare them all at once; for each, seconds from
        its DeclareIncident sent to its first unit on the incident watch, and the call's
        own latency; and the makespan."""
        reported = await self.dispatch.ReportIncidents(dispatch_pb2.ReportIncidentsRequest(
            reports=[report(n) for n in range(count)]), timeout=600)
        ids = [i.id for i in reported.incidents]
        sent: dict[str, float] = {}
        first: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async for change in self.commander.WatchIncidents(
                    dispatch_pb2.WatchIncidentsRequest()):
                incident = change.incident
                if incident.id in sent and incident.units and incident.id not in first:
                    first[incident.id] = time.perf_counter()
                    if len(first) == count:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)  # the watch's snapshot first

        async def declare(n: int) -> float:
            sent[ids[n]] = started = time.perf_counter()
            await self.commander.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
                incident_id=ids[n], category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
                hazard_type="gas_leak", grade=incident_pb2.GRADE_IV), timeout=120)
            return time.perf_counter() - started

        began = time.perf_counter()
        calls = await asyncio.gather(*(declare(n) for n in range(count)))
        await asyncio.wait_for(done.wait(), 600)
        watcher.cancel()
        makespan = max(first.values()) - began
        return [first[i] - sent[i] for i in ids], list(calls), makespan

    async def cells_turn_red(self, count: int, resolution: int) -> tuple[list[float], float]:
        """`count` gauges, each in a cell of its own, all red in one reading batch: for
        each incident, seconds from the batch sent until the incident watch shows it;
        and until the last."""
        points = lattice(count, resolution)
        await self.monitor.RegisterSensors(monitor_pb2.RegisterSensorsRequest(sensors=[
            monitor_pb2.RegisterSensorRequest(
                id=f"surge-gauge-{n}", kind="water_level", hazard="urban_flooding",
                unit_of_measure="m", location=point,
                thresholds=monitor_pb2.Thresholds(blue=0.1, yellow=0.2, orange=0.3, red=0.5),
                direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE)
            for n, point in enumerate(points)]), timeout=600)
        seen: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async for change in self.commander.WatchIncidents(
                    dispatch_pb2.WatchIncidentsRequest()):
                if change.incident.warning_id and change.incident.id not in seen:
                    seen[change.incident.id] = time.perf_counter()
                    if len(seen) == len(points):
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        sent = time.perf_counter()
        await self.gateway.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(readings=[
            monitor_pb2.Reading(sensor_id=f"surge-gauge-{n}", value=0.9)
            for n in range(len(points))]), timeout=600)
        await asyncio.wait_for(done.wait(), 900)
        watcher.cancel()
        waits = [t - sent for t in seen.values()]
        return waits, max(waits)


def lattice(count: int, resolution: int) -> list[common_pb2.GeoPoint]:
    """`count` points around the city, each in an H3 cell (at the grid's resolution) of its
    own."""
    points, cells = [], set()
    side = int(count ** 0.5) + 1
    for n in range(side * side * 2):
        lat = 31.0 + (n // side) * 0.012
        lon = 121.1 + (n % side) * 0.012
        cell = h3.latlng_to_cell(lat, lon, resolution)
        if cell not in cells:
            cells.add(cell)
            points.append(common_pb2.GeoPoint(lat=lat, lon=lon))
        if len(points) == count:
            return points
    raise ValueError(f"found only {len(points)} separate cells")


async def raw_publishes(root: Path, count: int) -> float:
    """`count` JetStream publishes to a NATS server of the same binary (no TLS, no users),
    all acknowledgements in flight."""
    server = EmbeddedNats(root / "baseline-nats")
    url = server.start()
    try:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="SURGE", subjects=["surge.baseline"])
        started = time.perf_counter()
        acks = [await js.publish_async("surge.baseline", b"{}") for _ in range(count)]
        await asyncio.gather(*acks)
        seconds = time.perf_counter() - started
        await nc.close()
        return seconds
    finally:
        server.stop()


async def commands(stack: Stack, dsn: str, args: argparse.Namespace, _: Path
                   ) -> tuple[list[str], str]:
    callers = Callers(stack)
    await callers.report_one_by_one(args.callers, 50)  # warm the paths the runs take
    await callers.report_in_batches(args.callers, 50, 10)
    runs: dict[str, Callable[[], Awaitable[float]]] = {
        "raw": lambda: raw_inserts(dsn, args.callers, args.reports),
        "one": lambda: callers.report_one_by_one(args.callers, args.reports),
        "batched": lambda: callers.report_in_batches(args.callers, args.reports, args.batch),
        "solo_units": lambda: callers.register_one_by_one(args.units),
        "bulk_units": lambda: callers.register_at_once(args.units),
    }
    s = {}
    for name, run in runs.items():
        behind = read_model_behind(stack)
        s[name] = await run()
        print(f"  {name}: {s[name]:.2f} s ({read_model_behind(stack) - behind} "
              "\"read model behind\" log lines)", flush=True)
    n, c = args.reports, args.callers
    raw, one, batched = n / s["raw"], n / s["one"], n / s["batched"]
    return [
        f"baseline: single-row INSERT transactions, {c} connections   {raw:9,.0f} /s",
        f"ReportIncident, {c} callers                                 {one:9,.0f} commands/s"
        f"   ({one / raw:.3f}x raw)",
        f"ReportIncidents, {c} callers, batches of {args.batch:<4}             "
        f"{batched:9,.0f} reports/s    ({batched / raw:.3f}x raw)",
        f"RegisterUnit one by one (16 at a time), {args.units} units      "
        f"{s['solo_units']:9.1f} s",
        f"RegisterUnits, one call of {args.units} units                   "
        f"{s['bulk_units']:9.1f} s",
    ], (f"ReportIncident {one:,.0f} commands/s at {c} callers beside {raw:,.0f} raw INSERT "
        f"transactions/s")


async def events_stored(dsn: str) -> dict[str, int]:
    """How many events each service has stored."""
    conn = await asyncpg.connect(dsn)
    try:
        return {name: await conn.fetchval(f"SELECT count(*) FROM {name}.{name}_events")
                for name in Stack.SERVICES}
    finally:
        await conn.close()


async def declarations(stack: Stack, dsn: str, args: argparse.Namespace, __: Path
                       ) -> tuple[list[str], str]:
    callers = Callers(stack)
    await callers.register_at_once(6000)
    # One at a time until the fleet's registration has settled: the last is the baseline.
    for _ in range(3):
        idle, _calls, _span = await callers.declare_at_once(1)
    behind, before = read_model_behind(stack), await events_stored(dsn)
    waits, calls, makespan = await callers.declare_at_once(args.declare)
    behind, after = read_model_behind(stack) - behind, await events_stored(dsn)
    written = {name: after[name] - before[name] for name in after}
    p50, p99 = percentile(waits, 0.5), percentile(waits, 0.99)
    return [
        f"baseline: one incident declared on the idle system -> first unit   "
        f"{idle[0] * 1000:7.0f} ms",
        f"{args.declare} declared at once: declare -> first unit assigned     "
        f"p50 {p50:5.2f} s  p99 {p99:5.2f} s  makespan {makespan:5.1f} s",
        f"DeclareIncident call latency during the surge                  "
        f"p50 {percentile(calls, 0.5):5.2f} s  p99 {percentile(calls, 0.99):5.2f} s",
        "events stored until the last first unit, per declaration       "
        + ", ".join(f"{name} {count / args.declare:.1f}" for name, count in written.items())
        + f"  ({sum(written.values()) / makespan:,.0f} events/s)",
        f"\"read model behind\" log lines during it                        {behind:7d}",
    ], (f"{args.declare} declarations at once: first unit p99 {p99:.2f} s (one on the idle "
        f"system {idle[0] * 1000:.0f} ms)")


async def red_cells(stack: Stack, dsn: str, args: argparse.Namespace, root: Path
                    ) -> tuple[list[str], str]:
    callers = Callers(stack)
    raw_insert = await raw_inserts(dsn, 1, args.cells)
    raw_publish = await raw_publishes(root, args.cells)
    waits, last = await callers.cells_turn_red(args.cells, args.resolution)
    return [
        f"baseline: {args.cells} single-row INSERT transactions, one connection "
        f"{raw_insert:7.2f} s",
        f"baseline: {args.cells} JetStream publishes                           "
        f"{raw_publish:7.2f} s",
        f"{args.cells} cells red in one batch: until every incident is opened    "
        f"{last:7.2f} s  ({args.cells / last:,.0f} opened/s; per incident p50 "
        f"{percentile(waits, 0.5):.2f} s, p99 {percentile(waits, 0.99):.2f} s)",
    ], (f"{args.cells} red cells: every incident opened in {last:.1f} s (raw: "
        f"{raw_insert:.2f} s of INSERTs, {raw_publish:.2f} s of publishes)")


PHASES = {"commands": commands, "declare": declarations, "red": red_cells}


def read_model_behind(stack: Stack) -> int:
    """How often the services answered before their read model had the write."""
    logs = [stack.state_dir / "logs" / f"{name}.log" for name in ("dispatch", "resources")]
    return sum(log.read_text().count("read model behind") for log in logs if log.exists())


async def run(phases: list[str], args: argparse.Namespace, root: Path,
              database: Callable[[str], str]) -> tuple[list[str], list[str]]:
    lines, headline = [], []
    for phase in phases:
        dsn = database(phase)
        with Stack(root / phase, database_url=dsn) as stack:
            print(f"{phase}: stack up; measuring", flush=True)
            table, figure = await PHASES[phase](stack, dsn, args, root)
        lines += table
        headline.append(figure)
    return lines, headline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"which to run, of {', '.join(PHASES)} (each on a fresh stack)")
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--units", type=int, default=9900)
    parser.add_argument("--declare", type=int, default=1000)
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument("--resolution", type=int, default=8, help="the grid's H3 resolution")
    args = parser.parse_args()
    phases = args.phases.split(",")
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}: pick of "
                     f"{', '.join(PHASES)}")
    with embedded_postgres("surge") as (root, database):
        # One event loop for every phase: grpc.aio serves one loop per process.
        lines, headline = asyncio.run(run(phases, args, root, database))
    print()
    print("\n".join(lines))
    print(f"\nsurge: {'; '.join(headline)}")


if __name__ == "__main__":
    main()
