"""How fast monitor takes readings with a city's 50,000 sensors registered, against a bare
protobuf-decode-plus-threshold loop measured in the same run on the same machine.

- registration: 50,000 sensors through RegisterSensors (5,000 per call);
- steady readings: every reading leaves its sensor's level as it was (the common case);
- level-changing readings: every reading moves its sensor to another colour (a storm);
- bare loop: decode the same IngestReadingBatch bytes and compare each value with its
  sensor's four thresholds, in this process, nothing else; its best of three runs before
  the steady calls and three after (a machine others share can slow any one of them).

Readings go in IngestReadingBatch calls of 10,000 through the stack as `lifeline up` runs it
(TLS, verified tokens, the four services); a call's figure counts from sending its bytes to
its answer, which comes once the call's transitions are committed.

    python bench/ingest.py [--sensors 50000] [--batches 20]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import grpc
from benchkit import embedded_postgres
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.events import to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb

BATCH = 10_000
PER_CELL = 500  # sensors per grid cell: a storm over a district, not one per street
THRESHOLDS = (10.0, 20.0, 30.0, 50.0)


def sensors(n: int) -> list[pb.RegisterSensorRequest]:
    out = []
    for i in range(n):
        cluster, k = divmod(i, PER_CELL)
        out.append(pb.RegisterSensorRequest(
            id=f"gauge-{i:05d}", kind="rainfall", hazard="urban_flooding", unit_of_measure="mm/h",
            location=common_pb2.GeoPoint(lat=20.0 + (cluster % 20) * 0.05 + (k % 20) * 2e-5,
                                         lon=100.0 + (cluster // 20) * 0.05 + (k // 20) * 2e-5),
            thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50),
            direction=pb.DIRECTION_HIGHER_IS_WORSE, rules=pb.AlarmRules(deadband=0)))
    return out


def batches(n_sensors: int, count: int, values: tuple[float, float], start: datetime,
            changing: bool) -> list[bytes]:
    """count serialized batches of BATCH readings, field time one second apart per batch.
    Changing: each sensor alternates between the two values from one reading to its next."""
    out = []
    for b in range(count):
        when = to_timestamp(start + timedelta(seconds=b))
        first = (b * BATCH) % n_sensors
        readings = []
        for j in range(BATCH):
            i = (first + j) % n_sensors
            turn = ((b * BATCH + j) // n_sensors) % 2 if changing else 0
            readings.append(pb.Reading(sensor_id=f"gauge-{i:05d}", value=values[turn],
                                       measured_at=when))
        out.append(pb.IngestReadingBatchRequest(readings=readings).SerializeToString())
    return out


def level_for(value: float, t: tuple[float, float, float, float]) -> int:
    level = 1
    for colour, limit in zip((2, 3, 4, 5), t, strict=True):
        if value >= limit:
            level = colour
    return level


def bare_loop(payloads: list[bytes], n_sensors: int) -> float:
    """Readings per second: decode, look the sensor up, compare with its thresholds."""
    thresholds = {f"gauge-{i:05d}": THRESHOLDS for i in range(n_sensors)}
    levels: dict[str, int] = {}
    started = time.perf_counter()
    total = 0
    for payload in payloads:
        for reading in pb.IngestReadingBatchRequest.FromString(payload).readings:
            levels[reading.sensor_id] = level_for(reading.value, thresholds[reading.sensor_id])
            total += 1
    return total / (time.perf_counter() - started)


def send(call: grpc.UnaryUnaryMultiCallable, payloads: list[bytes]) -> tuple[float, int]:
    """Readings per second over the calls, and warnings moved."""
    started, moved = time.perf_counter(), 0
    for payload in payloads:
        answer = pb.IngestReadingsResponse.FromString(call(payload, timeout=300))
        assert answer.accepted == BATCH, answer.accepted
        moved += len(answer.warnings)
    return len(payloads) * BATCH / (time.perf_counter() - started), moved


def measure(stack: Stack, n_sensors: int, count: int) -> None:
    channel = stack.channel("monitor", stack.token("bench-gateway", "sensor-gateway", "admin"))
    register = channel.unary_unary("/lifeline.monitor.v1.MonitorService/RegisterSensors",
                                   request_serializer=pb.RegisterSensorsRequest.SerializeToString,
                                   response_deserializer=pb.RegisterSensorsResponse.FromString)
    ingest = channel.unary_unary("/lifeline.monitor.v1.MonitorService/IngestReadingBatch",
                                 request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    requests = sensors(n_sensors)
    started = time.perf_counter()
    for first in range(0, n_sensors, 5_000):
        answer = register(pb.RegisterSensorsRequest(sensors=requests[first:first + 5_000]),
                          timeout=300)
        assert answer.registered == len(requests[first:first + 5_000]), answer
    registration = time.perf_counter() - started
    print(f"registered {n_sensors} sensors in {registration:.1f} s", flush=True)

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    send(ingest, batches(n_sensors, 2, (1.0, 1.0), start - timedelta(minutes=1),
                         changing=False))  # warm up
    steady = batches(n_sensors, count, (1.0, 1.0), start, changing=False)
    bare = max(bare_loop(steady, n_sensors) for _ in range(3))
    steady_rate, _ = send(ingest, steady)
    print(f"steady: {steady_rate:,.0f} readings/s", flush=True)
    bare = max(bare, *(bare_loop(steady, n_sensors) for _ in range(3)))
    # Everyone to yellow first (one warning per cell, dispatch opens their incidents), then
    # every reading flips its sensor between orange and yellow.
    later = start + timedelta(minutes=10)
    rise = batches(n_sensors, n_sensors // BATCH, (25.0, 25.0), later, changing=False)
    send(ingest, rise)
    flips = batches(n_sensors, count, (35.0, 25.0), later + timedelta(minutes=1), changing=True)
    changing_rate, moved = send(ingest, flips)
    print(f"level-changing: {changing_rate:,.0f} readings/s ({moved} warning moves)",
          flush=True)
    channel.close()
    print()
    print(f"baseline: bare decode + threshold loop           {bare:>12,.0f} readings/s")
    print(f"steady readings, {n_sensors} sensors            {steady_rate:>12,.0f} readings/s"
          f"   ({steady_rate / bare:.2f}x the bare loop)")
    print(f"level-changing readings                         {changing_rate:>12,.0f} readings/s")
    print(f"registration of {n_sensors} sensors (RegisterSensors) {registration:>8.1f} s"
          f"   ({n_sensors / registration:,.0f}/s)")
    print(f"monitor ingest: steady {steady_rate:,.0f}/s ({steady_rate / bare:.2f}x bare "
          f"{bare:,.0f}/s), level-changing {changing_rate:,.0f}/s, {n_sensors} sensors "
          f"registered in {registration:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=50_000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    with embedded_postgres("ingest") as (root, database), \
            Stack(root / "stack", database_url=database("bench")) as stack:
        measure(stack, args.sensors, args.batches)


if __name__ == "__main__":
    main()
