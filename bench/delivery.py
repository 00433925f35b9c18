"""Reading -> delivered: how long a warning takes from the sensor's reading to a person's
webhook endpoint (signature checked) and mailbox (SMTP over STARTTLS), against a stack as
`lifeline up` runs it (TLS, tokens), next to a bare HTTP POST of the same document to the
same receiver in the same run. The receiver and the SMTP server run in this process, so
one clock times both ends.

    python bench/delivery.py [--warnings 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from benchkit import embedded_postgres, percentile, timing
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.events import to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline_monitor import grid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test servers are the bench's receivers too
from tests.channel_servers import Background, SmtpSink, WebhookReceiver  # noqa: E402

XUJIAHUI = common_pb2.GeoPoint(lat=31.1955, lon=121.4373)
OFFICER, ADDRESS = "bench-officer", "officer@xuhui.example"
TARGET_MS = 2000.0


def wait(check: object, what: str, timeout: float = 30.0) -> float:
    """Poll until check() gives an arrival time; answers it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found is not None:
            return float(found)
        time.sleep(0.002)
    raise TimeoutError(f"no {what} within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warnings", type=int, default=50)
    args = parser.parse_args()
    servers = Background()
    hook = WebhookReceiver()
    servers.run(hook.http.start())
    with embedded_postgres("delivery") as (root, database):
        smtp = SmtpSink(root / "smtp-certs")
        smtp.start()
        channels = root / "channels.toml"
        channels.write_text(f"""
[retry]
tries = 3
backoff = 0.2
timeout = 5
[smtp]
host = "127.0.0.1"
port = {smtp.port}
ca_file = {json.dumps(smtp.ca_file)}
[[parties]]
id = "{OFFICER}"
channels = [
  {{ kind = "webhook", url = "{hook.url}", secret = "{hook.secret}" }},
  {{ kind = "email", to = "{ADDRESS}", also = true }},
]
""")
        try:
            with Stack(root / "stack", database_url=database("delivery"),
                       extra_env={"LIFELINE_CHANNELS": str(channels)}) as stack:
                webhook, email, bare = measure(stack, hook, smtp, args.warnings)
        finally:
            smtp.stop()
            servers.run(hook.http.stop())
            servers.close()
    print()
    print(timing("bare HTTP POST of the document to the receiver", bare))
    print(timing("reading -> webhook delivered (signature checked)", webhook))
    print(timing("reading -> mail delivered (SMTP, STARTTLS)", email))
    p99_hook, p99_mail, p99_bare = (percentile(x, 0.99) for x in (webhook, email, bare))
    print(f"reading -> delivered p99 over {len(webhook)} warnings: webhook {p99_hook:.0f} ms, "
          f"mail {p99_mail:.0f} ms (bare POST {p99_bare:.1f} ms); target {TARGET_MS:.0f} ms: "
          f"{'met' if max(p99_hook, p99_mail) <= TARGET_MS else 'NOT met'}")


def measure(stack: Stack, hook: WebhookReceiver, smtp: SmtpSink, warnings: int
            ) -> tuple[list[float], list[float], list[float]]:
    token = stack.token("bench", "admin", "sensor-gateway", "viewer")
    monitor = monitor_pb2_grpc.MonitorServiceStub(stack.channel("monitor", token))
    city = grid.read_grid_file(ROOT / "grids" / "xuhui.toml")
    for cell in city.cells:
        cell.grid_officer = OFFICER
    monitor.LoadGrid(city)
    # One hazard per warning, so each reading raises a warning of its own.
    monitor.RegisterSensors(pb.RegisterSensorsRequest(sensors=[pb.RegisterSensorRequest(
        id=f"bench-{n}", kind="water_level", hazard=f"bench_flooding_{n}", location=XUJIAHUI,
        unit_of_measure="cm", direction=pb.DIRECTION_HIGHER_IS_WORSE, new_names=True,
        thresholds=pb.Thresholds(blue=10, yellow=20, orange=30, red=50))
        for n in range(warnings + 5)]))
    start = datetime.now(UTC) - timedelta(minutes=10)

    def raise_warning(n: int) -> tuple[float, str]:
        sent = time.perf_counter()
        answer = monitor.IngestReadingBatch(pb.IngestReadingBatchRequest(readings=[pb.Reading(
            sensor_id=f"bench-{n}", value=55,
            measured_at=to_timestamp(start + timedelta(seconds=n)))]))
        return sent, answer.warnings[0].id

    def arrivals(warning_id: str) -> tuple[float, float]:
        hooked = wait(lambda: next((r.at for r in hook.received if r.verified
                                    and r.data["notification"]["warningId"] == warning_id),
                                   None), "webhook")
        mailed = wait(lambda: next((m.at for m in list(smtp.mails)
                                    if warning_id in m.message["Subject"] + str(m.message)),
                                   None), "mail")
        return hooked, mailed

    for n in range(warnings, warnings + 5):  # warm up: connections, caches
        arrivals(raise_warning(n)[1])
    print(f"measuring {warnings} warnings: reading -> webhook and mail", flush=True)
    webhook, email = [], []
    for n in range(warnings):
        sent, warning_id = raise_warning(n)
        hooked, mailed = arrivals(warning_id)
        webhook.append((hooked - sent) * 1000)
        email.append((mailed - sent) * 1000)
    body = hook.received[-1].body
    bare = []
    with httpx.Client() as client:
        for _ in range(warnings):
            begin = time.perf_counter()
            client.post(hook.url, content=body, headers={"content-type": "application/json"})
            bare.append((time.perf_counter() - begin) * 1000)
    return webhook, email, bare


if __name__ == "__main__":
    main()
