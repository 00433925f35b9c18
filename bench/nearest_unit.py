"""How long resources takes to choose units for a request, as the fleet grows: in process
(the fleet index plus travel-time ranking) and through the service (RecommendUnits over
TLS with a verified token), next to a linear scan of the same fleet measured in the same
run.

A request here is two ambulances for a random place in a 50 km square; the fleet is four
kinds of unit spread over that square, 80% of them available. In process, the garbage
collector is set as the resources service sets it (`lifeline.heap`).

    python bench/nearest_unit.py [--queries 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime

from benchkit import embedded_postgres, percentile, timing
from lifeline import heap
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.grpcutil import channel, client_credentials
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline_resources.fleet import CircuityModel, Fleet, FleetUnit, Point, distance_km

SIZES = (100, 1_000, 10_000)
KINDS = ("ambulance", "fire_engine", "police_car", "rescue_team")
NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


def place(rng: random.Random) -> Point:
    return 31.0 + rng.random() * 0.45, 121.2 + rng.random() * 0.52


def fleet_of(size: int) -> list[FleetUnit]:
    rng = random.Random(size)
    return [FleetUnit(f"{KINDS[n % 4]}-{n}", (KINDS[n % 4],), "d", place(rng),
                      rng.random() < 0.8, "AVAILABLE") for n in range(size)]


def linear_scan(units: list[FleetUnit], kind: str, count: int, where: Point) -> list[str]:
    """The same choice without an index: every available unit of the kind, by distance,
    the nearest few ranked by travel time."""
    near = sorted((distance_km(u.home, where), u.id, u.home) for u in units
                  if u.available and kind in u.kinds)[:max(count + 4, 2 * count)]
    seconds = CircuityModel().seconds(kind, [h for _, _, h in near], where)
    return [unit_id for _, unit_id in sorted(zip(seconds, (i for _, i, _ in near),
                                                 strict=True))[:count]]


def line(name: str, millis: list[float]) -> str:
    return timing(name, millis, width=52, digits=3)


def in_process(queries: int) -> dict[int, tuple[list[float], list[float]]]:
    out = {}
    for size in SIZES:
        units = fleet_of(size)
        fleet = Fleet()
        for u in units:
            fleet.upsert(u)
        heap.settle()  # the collector as the resources service runs it
        rng = random.Random(7)
        indexed, scanned = [], []
        for _ in range(queries):
            where = place(rng)
            t = time.perf_counter()
            chosen = [c.unit.id for c in fleet.choose("ambulance", 2, where, NOW).chosen]
            indexed.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            scan = linear_scan(units, "ambulance", 2, where)
            scanned.append((time.perf_counter() - t) * 1000)
            assert chosen == scan, (chosen, scan)  # the index finds what the scan finds
        out[size] = (indexed, scanned)
        print(f"  in process, {size} units: done", flush=True)
    return out


async def through_service(stack: Stack, queries: int) -> dict[int, list[float]]:
    def stub(*roles: str) -> resources_pb2_grpc.ResourcesServiceStub:
        return resources_pb2_grpc.ResourcesServiceStub(channel(stack.address("resources"),
            client_credentials(stack.ca_pem, stack.token("bench", *roles))))

    admin, reader = stub("admin"), stub("viewer")
    gate = asyncio.Semaphore(32)
    out: dict[int, list[float]] = {}
    registered = 0
    for size in SIZES:
        started = time.perf_counter()

        async def register(u: FleetUnit) -> None:
            async with gate:
                await admin.RegisterUnit(resources_pb2.RegisterUnitRequest(
                    id=u.id, kind=u.kinds[0], department="d", new_names=True,
                    home=common_pb2.GeoPoint(lat=u.home[0], lon=u.home[1])))

        await asyncio.gather(*(register(u) for u in fleet_of(size)[registered:]))
        print(f"  service: {size} units ({size - registered} registered in "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
        registered = size
        rng = random.Random(9)
        times = []
        for _ in range(queries):
            lat, lon = place(rng)
            request = resources_pb2.RecommendUnitsRequest(
                location=common_pb2.GeoPoint(lat=lat, lon=lon),
                needs=[resources_pb2.UnitNeed(unit_kind="ambulance", count=2)])
            t = time.perf_counter()
            answer = await reader.RecommendUnits(request)
            times.append((time.perf_counter() - t) * 1000)
            assert len(answer.recommended) == 2
        out[size] = times
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    print("in process: fleet index against a linear scan", flush=True)
    local = in_process(args.queries)
    with embedded_postgres("nearest") as (root, database), \
            Stack(root / "stack", database_url=database("bench")) as stack:
        print("stack up", flush=True)
        remote = asyncio.run(through_service(stack, min(args.queries, 1000)))
    print()
    for size in SIZES:
        indexed, scanned = local[size]
        print(line(f"{size:>6} units: linear scan (baseline)", scanned))
        print(line(f"{size:>6} units: fleet index, in process", indexed))
        print(line(f"{size:>6} units: RecommendUnits through the service", remote[size]))
    indexed, scanned = local[SIZES[-1]]
    print(f"\nchoosing 2 of {SIZES[-1]} units: p99 {percentile(indexed, 0.99):.3f} ms in "
          f"process, {percentile(remote[SIZES[-1]], 0.99):.2f} ms through the service "
          f"(linear scan p99 {percentile(scanned, 0.99):.2f} ms; 100 units: "
          f"{percentile(local[100][0], 0.99):.3f} ms in process)")


if __name__ == "__main__":
    main()
