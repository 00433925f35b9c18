"""Reading -> unit assignment while a city's day goes on, against the same with the city
quiet, with one replica of each service and with two (one leading, one on standby).

The city, compressed onto this machine (defaults; a whole city is in deploy/CAPACITY.md):
- sensors: 20,000 rain gauges reading every 30 s (about 670 readings/s, sent every 0.5 s);
  0.5% of them flap across their blue threshold each period (warnings raised and cleared,
  incidents opened from them, notifications, review's copies);
- a fleet of 2,000 units, each reporting its position every 10 s (200 reports/s, AVL);
- the probe: assignment_latency.py's run, one at a time, 100 of them: a syndromic
  sensor reads red, monitor warns, dispatch opens, the bench declares at once, resources
  assigns an ambulance and an epidemiology team, dispatch records UnitAssigned.

Idle: the same probes before the city's load starts, each on a quiet system. The last line
is the headline: the loaded p99 against idle, for one and two replicas.

    python bench/city_day.py [--runs 100] [--sensors 20000] [--units 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from assignment_latency import Bench
from benchkit import embedded_postgres, percentile, timing
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.events import to_timestamp
from lifeline.grpcutil import channel, client_credentials
from lifeline.monitor.v1 import monitor_pb2 as mpb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2 as rpb
from lifeline.resources.v1 import resources_pb2_grpc

TICK = 0.5  # seconds between the city's sends


class City:
    """The city's load: gauges and vehicles reporting, on their own channels."""

    def __init__(self, stack: Stack, sensors: int, units: list[rpb.Unit], period: float,
                 flapping: float, position_every: float) -> None:
        def connect(service: str, role: str) -> Any:
            return channel(stack.address(service), client_credentials(
                stack.ca_pem, stack.token(f"city-{role}", role)))

        self.monitor = monitor_pb2_grpc.MonitorServiceStub(connect("monitor", "sensor-gateway"))
        self.avl = resources_pb2_grpc.ResourcesServiceStub(connect("resources", "avl-gateway"))
        self.sensors, self.units, self.period = sensors, units, period
        self.flapping = max(1, int(sensors * flapping))
        self.position_every = position_every
        self.readings = self.reports = self.late = 0
        self.stopping = asyncio.Event()

    async def register(self, admin: Any) -> None:
        started = time.perf_counter()
        for first in range(0, self.sensors, 5_000):
            await admin.RegisterSensors(mpb.RegisterSensorsRequest(sensors=[
                mpb.RegisterSensorRequest(
                    id=f"gauge-{i:05d}", kind="rainfall", hazard="urban_flooding",
                    unit_of_measure="mm/h",
                    location=common_pb2.GeoPoint(lat=30.0 + (i * 7919 % 10007) / 10007 * 0.45,
                                                 lon=120.0 + (i * 104729 % 10009) / 10009 * 0.52),
                    thresholds=mpb.Thresholds(blue=10, yellow=20, orange=30, red=50),
                    direction=mpb.DIRECTION_HIGHER_IS_WORSE, rules=mpb.AlarmRules(deadband=0))
                for i in range(first, min(first + 5_000, self.sensors))]))
        print(f"{self.sensors} gauges registered in {time.perf_counter() - started:.1f} s",
              flush=True)

    async def _every_tick(self, send: Any) -> None:
        """Call send(tick) every TICK seconds of wall time; count the ticks that ran late."""
        tick, start = 0, time.monotonic()
        while not self.stopping.is_set():
            await send(tick)
            tick += 1
            delay = start + tick * TICK - time.monotonic()
            if delay < 0:
                self.late += 1
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)

    async def gauges(self) -> None:
        per_tick = max(1, round(self.sensors * TICK / self.period))
        ticks_per_period = max(1, round(self.period / TICK))

        async def send(tick: int) -> None:
            first = tick * per_tick
            period = tick // ticks_per_period
            when = to_timestamp(datetime.now(UTC))
            readings = []
            for j in range(per_tick):
                i = (first + j) % self.sensors
                # The flapping gauges read above blue one period and below it the next.
                value = 12.0 if i < self.flapping and period % 2 else 3.0
                readings.append(mpb.Reading(sensor_id=f"gauge-{i:05d}", value=value,
                                            measured_at=when))
            await self.monitor.IngestReadingBatch(mpb.IngestReadingBatchRequest(
                readings=readings))
            self.readings += len(readings)

        await self._every_tick(send)

    async def vehicles(self) -> None:
        per_tick = max(1, round(len(self.units) * TICK / self.position_every))

        async def reports(tick: int) -> Any:
            first = tick * per_tick
            batch = [self.units[(first + j) % len(self.units)] for j in range(per_tick)]
            yield rpb.ReportPositionsRequest(reports=[rpb.PositionReport(
                unit_id=u.id, position=common_pb2.GeoPoint(
                    lat=u.home.lat + 0.001 * (tick % 3), lon=u.home.lon))
                for u in batch])

        async def send(tick: int) -> None:
            answer = await self.avl.ReportPositions(reports(tick))
            self.reports += answer.accepted

        await self._every_tick(send)


async def all_units(bench: Bench) -> list[rpb.Unit]:
    units: list[rpb.Unit] = []
    token = ""
    while True:
        page = await bench.resources.ListUnits(rpb.ListUnitsRequest(
            page=common_pb2.PageRequest(page_size=1000, page_token=token)))
        units.extend(page.units)
        token = page.next_page_token
        if not token:
            return units


async def day(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(stack)
    nc = await bus.connect(stack.nats_url or "", "bench", **stack.nats_login())
    bench.js = nc.jetstream()
    for subject in ("monitor.warning", "dispatch.incident", "resources"):
        await nc.subscribe(f"lifeline.{subject}.>", cb=bench.seen.on_message)
    await bench.grow_fleet(args.units)
    city = City(stack, args.sensors, await all_units(bench), args.period, args.flapping,
                args.position_every)
    await city.register(bench.monitor)
    await bench.measure(5)  # warm the paths
    idle = [r[-1] for r in await bench.measure(args.runs)]

    print("the city's day begins", flush=True)
    started = time.monotonic()
    load = [asyncio.create_task(city.gauges()), asyncio.create_task(city.vehicles())]
    bench.quiet = _never_quiet  # type: ignore[method-assign]  # the city never is
    await bench.measure(5)
    loaded = [r[-1] for r in await bench.measure(args.runs)]
    elapsed = time.monotonic() - started
    city.stopping.set()
    await asyncio.gather(*load)
    await nc.close()
    return {"idle": idle, "loaded": loaded, "readings/s": city.readings / elapsed,
            "reports/s": city.reports / elapsed, "late ticks": city.late}


async def _never_quiet() -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="probes, idle and loaded")
    parser.add_argument("--sensors", type=int, default=20_000)
    parser.add_argument("--period", type=float, default=30.0, help="seconds between a "
                        "gauge's readings")
    parser.add_argument("--flapping", type=float, default=0.005,
                        help="share of gauges crossing blue each period")
    parser.add_argument("--units", type=int, default=2_000)
    parser.add_argument("--position-every", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[int, dict[str, Any]] = {}
    with embedded_postgres("cityday") as (root, database):
        for replicas in (1, 2):
            print(f"\n--- {replicas} replica{'s' if replicas > 1 else ''} of each service",
                  flush=True)
            with Stack(root / f"stack-{replicas}", database_url=database(f"city{replicas}"),
                       replicas=replicas) as stack:
                results[replicas] = asyncio.run(day(stack, args))
    print()
    for replicas, r in results.items():
        print(f"{replicas} replica(s): the city sent {r['readings/s']:.0f} readings/s and "
              f"{r['reports/s']:.0f} positions/s ({r['late ticks']} late ticks)")
        print(timing("  reading -> assignment, city quiet", r["idle"]))
        print(timing("  reading -> assignment, city's day", r["loaded"]))
    print("\nreading -> assignment p99 under the city's day: " + "; ".join(
        f"{replicas} replica(s) {percentile(r['loaded'], 0.99):.0f} ms against "
        f"{percentile(r['idle'], 0.99):.0f} ms quiet "
        f"({percentile(r['loaded'], 0.99) / percentile(r['idle'], 0.99):.2f}x)"
        for replicas, r in results.items()))


if __name__ == "__main__":
    main()
