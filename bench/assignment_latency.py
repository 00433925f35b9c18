"""How long the software takes from a threshold-crossing reading to the unit assignment
being recorded on the incident, with a city's fleet and with a small one, against raw
PostgreSQL and NATS round trips measured in the same run on the same machine.

Each run starts on an idle system (every consumer caught up). A sensor in a cell of its
own reads past its red threshold (t0, taken just before the gRPC call). Monitor raises a
warning, dispatch opens an incident; the bench, standing in for a duty officer with no
human delay, declares it the moment the incident appears on NATS; resources assigns the
nearest ambulance and epidemiology team; dispatch records UnitAssigned. The figure is that
event's recorded_at minus t0 (all clocks are this machine's). After each run the units are
released and the bench waits until resources has them available again, so every run
chooses among the whole fleet.

The same runs are measured with 100 units, then with 10,000 (the first hundred plus 9,900
more, of four kinds over a 50 km square). The stack runs as `lifeline up` does: TLS,
verified tokens, a NATS user per service.

    python bench/assignment_latency.py [--runs 200] [--fleet 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import nats
from benchkit import embedded_postgres, percentile, timing
from google.protobuf.message import Message
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.embedded import EmbeddedNats
from lifeline.events import event_of
from lifeline.grpcutil import channel, client_credentials
from lifeline.identity.nats import LISTENS_TO, consumer_name, stream_name
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc

#: The fleet's mix; the infectious-disease plan at grade IV takes an ambulance and an
#: epidemiology team, so those two kinds are the ones searched.
FLEET_MIX = (("ambulance", "medical", 0.4), ("epidemiology_team", "health", 0.2),
             ("fire_engine", "fire", 0.25), ("police_car", "police", 0.15))
STAGES = ("reading -> warning recorded", "warning -> incident opened recorded",
          "incident opened -> seen by the officer", "declare sent -> resources requested",
          "resources requested -> units assigned (resources)",
          "units assigned -> UnitAssigned recorded (dispatch)")


def summary(name: str, millis: list[float]) -> str:
    return timing(name, millis)


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


class Seen:
    """Every event on the bus, by (key, event name): when it was recorded and when seen."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], tuple[Message, datetime]] = {}
        self.waiting: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def on_message(self, msg: nats.aio.msg.Msg) -> None:
        parts = msg.subject.split(".")  # lifeline.<service>.<aggregate>.<event>
        wrapper: Message = {"monitor": monitor_pb2.WarningEvent,
                            "dispatch": incident_pb2.IncidentEvent,
                            "resources": (resources_pb2.UnitEvent if parts[2] == "unit"
                                          else resources_pb2.RequestEvent)}[parts[1]]()
        wrapper.ParseFromString(msg.data)
        field, event = event_of(wrapper)
        if field not in ("raised", "opened", "resources_requested", "answered",
                         "unit_assigned", "released"):
            return
        # Warnings and the incidents opened from them by warning id, units by unit id,
        # resource requests and the rest of an incident's events by incident id.
        if parts[1] == "monitor" or field == "opened":
            key = event.warning_id  # type: ignore[attr-defined]
        elif parts[2] == "unit":
            key = event.unit_id  # type: ignore[attr-defined]
        elif parts[1] == "resources":
            key = event.incident_id  # type: ignore[attr-defined]
        else:
            key = event.meta.aggregate_id  # type: ignore[attr-defined]
        self.events[(key, field)] = (event, datetime.now(UTC))
        future = self.waiting.pop((key, field), None)
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, key: str, field: str) -> tuple[Message, datetime]:
        if (key, field) not in self.events:
            future = self.waiting.setdefault((key, field),
                                             asyncio.get_running_loop().create_future())
            await asyncio.wait_for(future, 10)
        return self.events.pop((key, field))


def recorded(event: Message) -> datetime:
    return event.meta.recorded_at.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined]


def ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


class Bench:
    def __init__(self, stack: Stack) -> None:
        def connect(service: str, *roles: str) -> grpc.aio.Channel:
            return channel(stack.address(service), client_credentials(
                stack.ca_pem, stack.token(f"bench-{service}", *roles)))

        self.stack = stack
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(connect("monitor", "sensor-gateway"))
        self.dispatch = dispatch_pb2_grpc.DispatchServiceStub(
            connect("dispatch", "operator", "commander"))
        self.resources = resources_pb2_grpc.ResourcesServiceStub(connect("resources", "admin"))
        self.seen = Seen()
        self.js: Any = None  # JetStream, to watch the consumers' lag
        self.fleet = 0
        self.runs = 0

    async def grow_fleet(self, size: int) -> None:
        """Register units up to `size`, spread over a 50 km square, 16 calls at a time."""
        started, gate = time.perf_counter(), asyncio.Semaphore(16)

        async def register(n: int) -> None:
            share, kind, department = n % 100, "", ""
            for kind, department, part in FLEET_MIX:  # noqa: B007 - the last one matches
                if share < part * 100:
                    break
                share -= round(part * 100)
            async with gate:
                await self.resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
                    id=f"{kind}-{n}", kind=kind, department=department,
                    home=common_pb2.GeoPoint(lat=30.0 + (n * 7919 % 10007) / 10007 * 0.45,
                                             lon=120.0 + (n * 104729 % 10009) / 10009 * 0.52)))

        await asyncio.gather(*(register(n) for n in range(self.fleet, size)))
        print(f"fleet of {size} units ({size - self.fleet} registered in "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
        self.fleet = size

    async def quiet(self) -> None:
        """Wait until every consumer has taken everything (no message pending or held):
        each run starts on an idle system, not behind the previous run's releases."""
        consumers = [(stream_name(upstream), consumer_name(service, upstream))
                     for service, upstreams in LISTENS_TO.items() for upstream in upstreams]
        async with asyncio.timeout(30):
            while True:
                infos = [await self.js.consumer_info(*c) for c in consumers]
                if all(not i.num_pending and not i.num_ack_pending for i in infos):
                    return
                await asyncio.sleep(0.005)

    async def run_once(self) -> list[float]:
        """One reading to assignment; the stage times in ms, the total last."""
        await self.quiet()
        self.runs += 1
        n = self.runs
        # A cell of its own inside the fleet's square.
        location = common_pb2.GeoPoint(lat=30.02 + (n % 40) * 0.011,
                                       lon=120.02 + (n // 40) * 0.011)
        sensor = f"bench-{n}"
        await self.monitor.RegisterSensor(monitor_pb2.RegisterSensorRequest(
            id=sensor, kind="syndromic", hazard="infectious_disease", unit_of_measure="cases",
            location=location, thresholds=monitor_pb2.Thresholds(blue=1, yellow=2, orange=3,
                                                                 red=4),
            direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE))
        t0 = datetime.now(UTC)
        answer = await self.monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(
            readings=[monitor_pb2.Reading(sensor_id=sensor, value=9)]))
        warning_id = answer.warnings[0].id
        raised, _ = await self.seen.wait(warning_id, "raised")
        opened, t_seen = await self.seen.wait(warning_id, "opened")
        incident_id = opened.meta.aggregate_id  # type: ignore[attr-defined]
        t_declare = datetime.now(UTC)
        await self.dispatch.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
            incident_id=incident_id, category=incident_pb2.CATEGORY_PUBLIC_HEALTH,
            hazard_type="infectious_disease", grade=incident_pb2.GRADE_IV))
        requested, _ = await self.seen.wait(incident_id, "resources_requested")
        answered, _ = await self.seen.wait(incident_id, "answered")
        assigned, _ = await self.seen.wait(incident_id, "unit_assigned")
        stages = [ms(t0, recorded(raised)), ms(recorded(raised), recorded(opened)),
                  ms(recorded(opened), t_seen), ms(t_declare, recorded(requested)),
                  ms(recorded(requested), recorded(answered)),
                  ms(recorded(answered), recorded(assigned))]
        # Release the units and wait until resources has them back, so the fleet is whole.
        units = [a.unit_id for a in answered.assignments]  # type: ignore[attr-defined]
        await self.dispatch.ReleaseUnits(dispatch_pb2.ReleaseUnitsRequest(
            incident_id=incident_id))
        for unit in units:
            await self.seen.wait(unit, "released")
        for key in [k for k in self.seen.events if k[0] in (warning_id, incident_id)]:
            del self.seen.events[key]
        return [*stages, ms(t0, recorded(assigned))]

    async def measure(self, runs: int) -> list[list[float]]:
        results = []
        for run in range(runs):
            results.append(await self.run_once())
            if (run + 1) % 50 == 0:
                totals = [r[-1] for r in results]
                print(f"  {run + 1}/{runs} runs, median so far {statistics.median(totals):.1f} ms",
                      flush=True)
        return results


async def measure(stack: Stack, runs: int, fleet: int) -> dict[int, list[list[float]]]:
    bench = Bench(stack)
    nc = await bus.connect(stack.nats_url or "", "bench", **stack.nats_login())
    bench.js = nc.jetstream()
    # Only the events the runs wait for: the bench shares the machine with the stack, and
    # decoding every event of every service would take a core's share from it.
    for subject in ("monitor.warning.raised", "dispatch.incident.opened",
                    "dispatch.incident.resources_requested", "dispatch.incident.unit_assigned",
                    "resources.request.answered", "resources.unit.released"):
        await nc.subscribe(f"lifeline.{subject}", cb=bench.seen.on_message)
    results = {}
    for size in (100, fleet):
        await bench.grow_fleet(size)
        await bench.measure(5)  # warm the paths the runs take
        results[size] = await bench.measure(runs)
    await nc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=10_000)
    args = parser.parse_args()
    with embedded_postgres("assignment") as (root, database):
        dsn = database("bench")
        with Stack(root / "stack", database_url=dsn) as stack:
            print("stack up; measuring baselines", flush=True)
            pg = asyncio.run(baseline_postgres(dsn, 1000))
            bare = EmbeddedNats(root / "bare-nats")
            try:
                js = asyncio.run(baseline_nats(bare.start(), 1000))
            finally:
                bare.stop()
            results = asyncio.run(measure(stack, args.runs, args.fleet))
    print()
    print(summary("baseline: asyncpg single-row INSERT (autocommit)", pg))
    print(summary("baseline: JetStream publish + PubAck", js))
    for size, runs in results.items():
        print(f"\nwith {size} units")
        for index, stage in enumerate(STAGES):
            print(summary(f"  {stage}", [r[index] for r in runs]))
        print(summary("reading -> unit assignment recorded", [r[-1] for r in runs]))
    totals = [r[-1] for r in results[args.fleet]]
    print(f"\nreading -> unit assignment recorded with {args.fleet} units: p99 "
          f"{percentile(totals, 0.99):.1f} ms (100 units: "
          f"{percentile([r[-1] for r in results[100]], 0.99):.1f} ms; "
          f"PostgreSQL INSERT p99 {percentile(pg, 0.99):.2f} ms, "
          f"JetStream publish p99 {percentile(js, 0.99):.2f} ms)")


if __name__ == "__main__":
    main()
