"""What a person at the console waits for, with a city's fleet and with a small one, in
Debian's Chromium (Playwright) against a stack run as `lifeline up` runs it (TLS, tokens).

The picture holds 1,000 active warnings (each in a cell of its own, each opening its
incident, so 1,000 incidents too) and first 100 units, then 10,000. For each fleet:
- first picture: from the page starting to load to the whole picture drawn;
- status change: from UpdateUnitStatus sent to the unit redrawn (50 units);
- frame time p95 while 100 units report a new position every second (10 s).

    python bench/console.py [--warnings 1000] [--fleet 10000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import percentile, timing
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
KINDS = (("fire_engine", "fire"), ("ambulance", "medical"), ("police_car", "police"))


def where(n: int, spread: float = 0.3) -> common_pb2.GeoPoint:
    """Places spread over a square of the demo city, far enough apart for a cell each."""
    return common_pb2.GeoPoint(lat=31.05 + (n * 7919 % 10007) / 10007 * spread,
                               lon=121.30 + (n * 104729 % 10009) / 10009 * spread)


class City:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.resources = resources_pb2_grpc.ResourcesServiceStub(
            stack.channel("resources", stack.token("fleet-office", "admin")))
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(
            stack.channel("monitor", stack.token("installer", "admin")))
        self.gateway = monitor_pb2_grpc.MonitorServiceStub(
            stack.channel("monitor", stack.token("gauges", "sensor-gateway")))
        self.avl = resources_pb2_grpc.ResourcesServiceStub(
            stack.channel("resources", stack.token("avl", "avl-gateway")))
        self.fleet = 0

    def raise_warnings(self, count: int) -> None:
        started = time.perf_counter()
        self.monitor.RegisterSensors(monitor_pb2.RegisterSensorsRequest(sensors=[
            monitor_pb2.RegisterSensorRequest(
                id=f"bench-gauge-{n}", kind="water_level", hazard="urban_flooding",
                unit_of_measure="m", location=where(n, 0.6),
                thresholds=monitor_pb2.Thresholds(blue=0.1, yellow=0.2, orange=0.3, red=0.5),
                direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE) for n in range(count)]))
        self.gateway.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(readings=[
            monitor_pb2.Reading(sensor_id=f"bench-gauge-{n}", value=0.25)
            for n in range(count)]))
        print(f"{count} warnings raised in {time.perf_counter() - started:.1f} s", flush=True)

    def grow_fleet(self, size: int) -> None:
        """The fleet grown to `size` units, registered in one RegisterUnits call."""
        started = time.perf_counter()
        units = []
        for n in range(self.fleet, size):
            kind, department = KINDS[n % len(KINDS)]
            units.append(resources_pb2.RegisterUnitRequest(
                id=f"unit-{n}", kind=kind, department=department, home=where(n)))
        self.resources.RegisterUnits(resources_pb2.RegisterUnitsRequest(units=units),
                                     timeout=600)
        print(f"fleet of {size} units ({size - self.fleet} registered in "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
        self.fleet = size

    def move(self, units: int, stop: threading.Event) -> None:
        """`units` units report a new position every second until stopped."""
        step = 0
        while not stop.is_set():
            step += 1
            self.avl.ReportPositions(iter([resources_pb2.ReportPositionsRequest(reports=[
                resources_pb2.PositionReport(unit_id=f"unit-{n}", position=where(n + step))
                for n in range(units)])]))
            stop.wait(1.0)


def open_console(browser: Browser, stack: Stack) -> Page:
    page = browser.new_context(ignore_https_errors=True,
                               viewport={"width": 1600, "height": 900}).new_page()
    page.goto(stack.sign_in_link("bench-officer", "operator"))
    page.wait_for_url("**/")
    page.wait_for_function("() => window.lifelineFirstPicture !== undefined",
                           timeout=120_000)
    return page


def first_picture(browser: Browser, stack: Stack, runs: int = 5) -> list[float]:
    """ms from the console page starting to load to its whole picture drawn."""
    waits = []
    for _ in range(runs):
        page = open_console(browser, stack)
        waits.append(float(page.evaluate("() => window.lifelineFirstPicture")))
        page.context.close()
    return waits


def status_changes(page: Page, city: City, first: int, count: int = 50) -> list[float]:
    waits = []
    for n in range(first, first + count):
        sent = time.time() * 1000
        city.resources.UpdateUnitStatus(resources_pb2.UpdateUnitStatusRequest(
            id=f"unit-{n}", status=common_pb2.UNIT_STATUS_OUT_OF_SERVICE))
        key = f"unit:unit-{n}:UNIT_STATUS_OUT_OF_SERVICE"
        page.wait_for_function("key => window.lifelineSeen[key] !== undefined", arg=key,
                               timeout=30_000)
        waits.append(float(page.evaluate("key => window.lifelineSeen[key]", key)) - sent)
    return waits


def frame_times(page: Page, city: City, seconds: float = 10) -> list[float]:
    stop = threading.Event()
    mover = threading.Thread(target=city.move, args=(100, stop), daemon=True)
    page.evaluate("""() => { window.benchFrames = []; let last = performance.now();
        const tick = (now) => { window.benchFrames.push(now - last); last = now;
          if (!window.benchStop) requestAnimationFrame(tick); };
        window.benchStop = false; requestAnimationFrame(tick); }""")
    mover.start()
    time.sleep(seconds)  # the frames are counted while the units move
    stop.set()
    mover.join()
    page.evaluate("() => { window.benchStop = true; }")
    frames: list[float] = page.evaluate("() => window.benchFrames")
    return frames[1:]


def measure(browser: Browser, stack: Stack, city: City, first_unit: int) -> dict[str, Any]:
    pictures = first_picture(browser, stack)
    page = open_console(browser, stack)
    changes = status_changes(page, city, first_unit)
    frames = frame_times(page, city)
    page.context.close()
    return {"picture": pictures, "changes": changes, "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warnings", type=int, default=1000)
    parser.add_argument("--fleet", type=int, default=10_000)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("bench/console.py needs Debian's chromium (apt-get install chromium)")
    state = Path(tempfile.mkdtemp(prefix="lifeline-bench-console-"))
    try:
        with Stack(state, console=True) as stack, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            city = City(stack)
            city.raise_warnings(args.warnings)
            city.grow_fleet(100)
            small = measure(browser, stack, city, first_unit=0)
            city.grow_fleet(args.fleet)
            large = measure(browser, stack, city, first_unit=100)
            browser.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    for name, figures in (("100 units", small), (f"{args.fleet:,} units", large)):
        print(f"\n{name}, {args.warnings:,} warnings and their incidents:")
        print(timing("  first picture (page load -> whole picture drawn)", figures["picture"],
                     digits=0))
        print(timing("  status change (sent -> drawn)", figures["changes"], digits=0))
        print(f"  {'frame time while 100 units move each second':<56} "
              f"p95 {percentile(figures['frames'], 0.95):6.1f} ms   "
              f"median {statistics.median(figures['frames']):5.1f} ms")
    print(f"\nconsole with {args.fleet:,} units: first picture "
          f"{statistics.median(large['picture']) / 1000:.2f} s (100 units: "
          f"{statistics.median(small['picture']) / 1000:.2f} s), status change p99 "
          f"{percentile(large['changes'], 0.99):.0f} ms (100 units: "
          f"{percentile(small['changes'], 0.99):.0f} ms), frame p95 "
          f"{percentile(large['frames'], 0.95):.0f} ms (100 units: "
          f"{percentile(small['frames'], 0.95):.0f} ms)")


if __name__ == "__main__":
    main()

