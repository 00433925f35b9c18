"""How soon the services answer where the correctness tests only catch a hang: a new incident
shown on a live watch, through gRPC and through `lifeline-dispatch watch --ndjson` (issue 13:
within a second of the report); a valid write right after a refused 1 MiB one (issue 7:
within a second); a 1 MiB event committed and the write after it; a standby taking over
leadership; and PostgreSQL stopped under the stack, told as UNAVAILABLE and NOT_SERVING
(issue 7: within 2 s) and SERVING again once it is back. Each beside a plain round trip of
the same kind measured in the same run.

The stack runs as `lifeline up` does (TLS, verified tokens, a NATS user per service), with a
PostgreSQL of its own, which the last part stops and starts.

    python bench/responsiveness.py [--runs 50] [--outages 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from benchkit import percentile, timing
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack, check_health
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import Cause
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.leadership import POLL_SECONDS, Leadership
from lifeline.monitor.v1 import monitor_pb2
from lifeline_monitor.application import MonitorApp
from lifeline_monitor.domain import Sensor

MIB = 1 << 20
WHERE = common_pb2.GeoPoint(lat=31.23, lon=121.47)


def millis(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def report_request(description: str) -> dispatch_pb2.ReportIncidentRequest:
    return dispatch_pb2.ReportIncidentRequest(hazard="gas_leak", location=WHERE,
                                              description=description)


class Arrivals:
    """Each item of an iterable (a server stream, a process's lines) with when it came,
    read on a thread of its own."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.queue: queue.Queue[tuple[float, Any]] = queue.Queue()
        self.items = items
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):  # the stream cancelled when done
            for item in self.items:
                self.queue.put((time.perf_counter(), item))

    def until(self, wanted: Callable[[Any], bool]) -> float:
        """When the first wanted item from here on came."""
        while True:
            arrived, item = self.queue.get(timeout=30)
            if wanted(item):
                return arrived


def round_trips(dispatch: dispatch_pb2_grpc.DispatchServiceStub, runs: int
                ) -> tuple[list[float], list[float]]:
    """GetIncident and ReportIncident, each alone: the baselines."""
    reads, writes = [], []
    incident_id = dispatch.ReportIncident(report_request("baseline"), timeout=10).incident.id
    for _ in range(runs):
        started = time.perf_counter()
        dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident_id),
                             timeout=10)
        reads.append(millis(started))
        started = time.perf_counter()
        dispatch.ReportIncident(report_request("baseline"), timeout=10)
        writes.append(millis(started))
    return reads, writes


def write_after_refusal(dispatch: dispatch_pb2_grpc.DispatchServiceStub, runs: int
                        ) -> list[float]:
    out = []
    for _ in range(runs):
        try:
            dispatch.ReportIncident(report_request("x" * MIB), timeout=10)
            raise SystemExit("a 1 MiB description was taken; the bench expects a refusal")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        started = time.perf_counter()
        dispatch.ReportIncident(report_request("after a refusal"), timeout=10)
        out.append(millis(started))
    return out


def watch_grpc(dispatch: dispatch_pb2_grpc.DispatchServiceStub, runs: int) -> list[float]:
    """From ReportIncident sent to the incident on an open WatchIncidents (the watch often
    shows it before the call has its answer)."""
    call = dispatch.WatchIncidents(dispatch_pb2.WatchIncidentsRequest())
    seen = Arrivals(call)
    seen.until(lambda m: m.caught_up)
    out = []
    try:
        for _ in range(runs):
            sent = time.perf_counter()
            incident_id = dispatch.ReportIncident(report_request("watched"),
                                                  timeout=10).incident.id
            out.append((seen.until(lambda m, i=incident_id: m.incident.id == i) - sent)
                       * 1000)
    finally:
        call.cancel()
    return out


def watch_cli(stack: Stack, dispatch: dispatch_pb2_grpc.DispatchServiceStub, runs: int,
              state: Path) -> list[float]:
    """The same through the operator's CLI in NDJSON, a line per change."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env |= {f"LIFELINE_{name.upper()}_ADDR": stack.address(name) for name in stack.SERVICES}
    env |= {"LIFELINE_STATE_DIR": str(state), "LIFELINE_TLS_CA": str(stack.authority.ca_file),  # type: ignore[union-attr]
            "LIFELINE_TOKEN": stack.token("bench-desk", *LOCAL_USER_ROLES)}
    process = subprocess.Popen([str(Path(sys.executable).parent / "lifeline-dispatch"),
                                "watch", "--ndjson"], env=env, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    seen = Arrivals(iter(process.stdout))
    seen.until(lambda line: "caughtUp" in line)
    out = []
    try:
        for _ in range(runs):
            sent = time.perf_counter()
            incident_id = dispatch.ReportIncident(report_request("watched"),
                                                  timeout=10).incident.id
            out.append((seen.until(lambda line, i=incident_id: i in line) - sent) * 1000)
    finally:
        process.terminate()
        process.wait(30)
    return out


def store_writes(database_url: str, runs: int) -> tuple[list[float], list[float], list[float]]:
    """In process: a small event alone (the baseline), a 1 MiB event, the write after it."""
    app = MonitorApp(database_url)
    now = datetime.now(UTC)

    def sensor(unit: str) -> Sensor:
        return Sensor.register(monitor_pb2.RegisterSensorRequest(
            id=f"bench-{uuid.uuid4().hex[:12]}", kind="rainfall", hazard="urban_flooding",
            unit_of_measure=unit, location=WHERE,
            thresholds=monitor_pb2.Thresholds(blue=1, yellow=2, orange=3, red=4),
            direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE), Cause("bench", now), now)

    small, big, after = [], [], []
    try:
        for _ in range(runs):
            for unit, into in (("mm/h", small), ("x" * MIB, big), ("mm/h", after)):
                event = sensor(unit)
                started = time.perf_counter()
                app.record(event)
                into.append(millis(started))
    finally:
        app.close()
    return small, big, after


def handovers(database_url: str, runs: int) -> list[float]:
    """From the leader's release to the waiting standby leading."""

    async def one() -> float:
        stop = asyncio.Event()
        leader, standby = Leadership(database_url, "bench"), Leadership(database_url, "bench")
        assert await leader.acquire(stop)
        waiting = asyncio.create_task(standby.acquire(stop))
        await asyncio.sleep(POLL_SECONDS)  # the standby has asked once and waits
        released = time.perf_counter()
        await leader.release()
        assert await asyncio.wait_for(waiting, 30)
        took = millis(released)
        await standby.release()
        return took

    logging.disable(logging.WARNING)  # each handover says so; the figures say enough
    return [asyncio.run(one()) for _ in range(runs)]


def seconds_until(check: Callable[[], bool], since: float, limit: float = 60) -> float:
    while not check():
        if time.perf_counter() - since > limit:
            raise SystemExit(f"nothing after {limit:.0f} s; see the services' logs")
        time.sleep(0.01)  # the poll interval: a hundredth of a second on figures of seconds
    return time.perf_counter() - since


def outages(stack: Stack, dispatch: dispatch_pb2_grpc.DispatchServiceStub, runs: int
            ) -> list[tuple[float, float, float]]:
    """PostgreSQL stopped: seconds to the first UNAVAILABLE, to every service NOT_SERVING;
    started again: seconds to every service SERVING."""
    assert stack.postgres is not None
    incident_id = dispatch.ReportIncident(report_request("before"), timeout=10).incident.id

    def answers(code: grpc.StatusCode) -> bool:
        try:
            dispatch.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident_id),
                                 timeout=30)
        except grpc.RpcError as error:
            return error.code() == code  # type: ignore[no-any-return]
        return code == grpc.StatusCode.OK

    def every(status: str) -> bool:
        return all(check_health(stack.address(n), stack.ca_pem) == status
                   for n in stack.SERVICES)

    out = []
    for _ in range(runs):
        stack.postgres.stop()
        stopped = time.perf_counter()
        unavailable = seconds_until(lambda: answers(grpc.StatusCode.UNAVAILABLE), stopped)
        not_serving = seconds_until(lambda: every("NOT_SERVING"), stopped)
        stack.postgres.start()
        back = time.perf_counter()
        out.append((unavailable, not_serving, seconds_until(lambda: every("SERVING"), back)))
        seconds_until(lambda: answers(grpc.StatusCode.OK), back)
    return out


@contextmanager
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="lifeline-bench-responsiveness-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--outages", type=int, default=3)
    args = parser.parse_args()
    with scratch() as root, Stack(root / "stack") as stack:
        assert stack.postgres is not None
        print("stack up; measuring", flush=True)
        dispatch = dispatch_pb2_grpc.DispatchServiceStub(stack.channel(
            "dispatch", stack.token("bench-desk", *LOCAL_USER_ROLES)))
        reads, writes = round_trips(dispatch, args.runs)
        refused = write_after_refusal(dispatch, args.runs)
        watched = watch_grpc(dispatch, args.runs)
        cli = watch_cli(stack, dispatch, max(args.runs // 5, 5), root / "cli")
        stack.postgres.create_database("bench_store")
        small, big, after = store_writes(stack.postgres.dsn("bench_store"), max(args.runs // 5, 5))
        stack.postgres.create_database("bench_leader")
        taken = handovers(stack.postgres.dsn("bench_leader"), max(args.runs // 5, 5))
        told = outages(stack, dispatch, args.outages)
    print()
    print(timing("baseline: GetIncident round trip", reads))
    print(timing("baseline: ReportIncident round trip", writes))
    print(timing("ReportIncident right after a refused 1 MiB one", refused))
    print(timing("report sent -> shown on WatchIncidents", watched))
    print(timing("report sent -> line from `lifeline-dispatch watch`", cli))
    print(timing("baseline: a small event recorded (in process)", small))
    print(timing("a 1 MiB event recorded", big))
    print(timing("the small write after it", after))
    print(timing(f"leadership handover (a standby polls every {POLL_SECONDS:g} s)", taken))
    print(timing("PostgreSQL stopped -> first UNAVAILABLE", [t[0] * 1000 for t in told]))
    print(timing("PostgreSQL stopped -> all four NOT_SERVING", [t[1] * 1000 for t in told]))
    print(timing("PostgreSQL back -> all four SERVING", [t[2] * 1000 for t in told]))
    worst_told = max(max(t[0], t[1]) for t in told)
    print(f"watch p99 {percentile(watched, 0.99):.0f} ms (CLI "
          f"{percentile(cli, 0.99):.0f} ms), write after a refusal p99 "
          f"{percentile(refused, 0.99):.0f} ms (goals 1 s); outage told in at most "
          f"{worst_told:.2f} s (goal 2 s); ReportIncident alone p99 "
          f"{percentile(writes, 0.99):.0f} ms")


if __name__ == "__main__":
    main()
