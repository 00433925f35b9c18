"""Commands when the whole city calls at once, next to what the same PostgreSQL does raw.

16 call-takers report incidents concurrently with ReportIncident (commands/s), beside
16 connections each inserting single rows in their own transactions on the same
PostgreSQL (transactions/s). Then the same reports through ReportIncidents, in batches
(reports/s). Then a fleet of 9,900 units registered one by one (16 calls at a time, as
bench/assignment_latency.py grows its fleet) beside one RegisterUnits call of 9,900 more.
The stack runs as `lifeline up` does: TLS, verified tokens, a NATS user per service.

    python bench/surge.py [--callers 16] [--reports 2000] [--batch 100] [--units 9900]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
from benchkit import embedded_postgres
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.grpcutil import channel, client_credentials
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc

WHERE = common_pb2.GeoPoint(lat=31.2304, lon=121.4737)
#: Kinds and departments the shipped plans know.
FLEET_MIX = (("ambulance", "medical"), ("fire_engine", "fire"), ("police_car", "police"))


def report(n: int) -> dispatch_pb2.ReportIncidentRequest:
    return dispatch_pb2.ReportIncidentRequest(hazard="gas_leak", location=WHERE,
                                              description=f"surge call {n}")


def unit(prefix: str, n: int) -> resources_pb2.RegisterUnitRequest:
    kind, department = FLEET_MIX[n % len(FLEET_MIX)]
    return resources_pb2.RegisterUnitRequest(
        id=f"{prefix}-{n}", kind=kind, department=department,
        home=common_pb2.GeoPoint(lat=30.0 + (n * 7919 % 10007) / 10007 * 0.45,
                                 lon=120.0 + (n * 104729 % 10009) / 10009 * 0.52))


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
        self.resources = resources_pb2_grpc.ResourcesServiceStub(connect("resources", "admin"))

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


async def measure(stack: Stack, dsn: str, args: argparse.Namespace) -> dict[str, float]:
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
    seconds = {}
    for name, run in runs.items():
        behind = read_model_behind(stack)
        seconds[name] = await run()
        print(f"  {name}: {seconds[name]:.2f} s ({read_model_behind(stack) - behind} "
              "\"read model behind\" log lines)", flush=True)
    return seconds


def read_model_behind(stack: Stack) -> int:
    """How often the services answered before their read model had the write."""
    logs = [stack.state_dir / "logs" / f"{name}.log" for name in ("dispatch", "resources")]
    return sum(log.read_text().count("read model behind") for log in logs if log.exists())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--units", type=int, default=9900)
    args = parser.parse_args()
    with embedded_postgres("surge") as (root, database):
        dsn = database("bench")
        with Stack(root / "stack", database_url=dsn) as stack:
            print("stack up; measuring", flush=True)
            s = asyncio.run(measure(stack, dsn, args))
    n, c = args.reports, args.callers
    raw, one, batched = n / s["raw"], n / s["one"], n / s["batched"]
    print()
    print(f"baseline: single-row INSERT transactions, {c} connections   {raw:9,.0f} /s")
    print(f"ReportIncident, {c} callers                                 {one:9,.0f} commands/s"
          f"   ({one / raw:.3f}x raw)")
    print(f"ReportIncidents, {c} callers, batches of {args.batch:<4}             "
          f"{batched:9,.0f} reports/s    ({batched / raw:.3f}x raw)")
    print(f"RegisterUnit one by one (16 at a time), {args.units} units      "
          f"{s['solo_units']:9.1f} s")
    print(f"RegisterUnits, one call of {args.units} units                   "
          f"{s['bulk_units']:9.1f} s")
    print(f"\nsurge: ReportIncident {one:,.0f} commands/s at {c} callers, ReportIncidents "
          f"{batched:,.0f} reports/s, beside {raw:,.0f} raw INSERT transactions/s; "
          f"{args.units} units {s['solo_units']:.1f} s one by one, {s['bulk_units']:.1f} s "
          f"in one RegisterUnits")


if __name__ == "__main__":
    main()
