"""lifeline-monitor's alarm-rule commands: rule flags for `register`, `shelve` / `unshelve`,
and `import-sensors FILE` (CSV or GeoJSON) through RegisterSensors."""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from lifeline import clikit
from lifeline.common.v1 import common_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc

CHUNK = 5_000
LEVELS = {name: getattr(common_pb2, f"WARNING_LEVEL_{name.upper()}")
          for name in ("blue", "yellow", "orange", "red")}
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                      r"(?:(\d+(?:\.\d+)?)s?)?$")


def duration(text: str) -> Duration:
    """2h, 30m, 90s, 1h30m, or plain seconds."""
    match = DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 2h, 30m or 90s")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    d = Duration()
    d.FromNanoseconds(round((((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1e9))
    return d


def rate(text: str) -> pb.RateLimit:
    """PER_HOUR:LEVEL, e.g. 0.3:orange."""
    per_hour, _, level = text.partition(":")
    try:
        return pb.RateLimit(per_hour=float(per_hour), level=LEVELS[level.lower()])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r}: give PER_HOUR:LEVEL, e.g. 0.3:orange "
                                         "(blue, yellow, orange or red)") from None


def add_rule_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--owner", default="", help="who maintains it (its faults go to them)")
    s.add_argument("--deadband", type=float, help="hysteresis per limit, in its unit")
    s.add_argument("--on-delay", type=duration, help="raise only after this long past (2m)")
    s.add_argument("--off-delay", type=duration, help="clear only after this long below")
    s.add_argument("--rate", type=rate, action="append", default=[],
                   help="PER_HOUR:LEVEL, a level from how fast it worsens (repeatable)")
    s.add_argument("--rate-window", type=duration, help="span the rate is measured over (1h)")
    s.add_argument("--expected-interval", type=duration,
                   help="silent longer than this: a stale-data fault (e.g. 10m)")
    s.add_argument("--valid-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="physically possible values; outside is bad quality")


def rules_from(args: argparse.Namespace) -> pb.AlarmRules:
    rules = pb.AlarmRules(rate=args.rate)
    if args.deadband is not None:
        rules.deadband = args.deadband
    for name in ("on_delay", "off_delay", "rate_window", "expected_interval"):
        if getattr(args, name) is not None:
            getattr(rules, name).CopyFrom(getattr(args, name))
    if args.valid_range:
        rules.valid_range.CopyFrom(pb.ValidRange(min=args.valid_range[0],
                                                 max=args.valid_range[1]))
    return rules


def _stub(channel: grpc.Channel) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(channel)


def shelve(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).ShelveSensor(pb.ShelveSensorRequest(
        id=args.sensor, duration=args.for_, reason=args.reason)).sensor


def unshelve(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return _stub(channel).UnshelveSensor(pb.UnshelveSensorRequest(
        id=args.sensor, reason=args.reason or "")).sensor


def sensors_in(path: Path) -> Iterator[pb.RegisterSensorRequest]:
    """Sensors of a CSV file (a header row naming the columns) or a GeoJSON
    FeatureCollection of points (the same names as properties)."""
    if path.suffix.lower() in (".geojson", ".json"):
        for feature in json.loads(path.read_text("utf-8"))["features"]:
            lon, lat = feature["geometry"]["coordinates"][:2]
            yield _sensor({**feature.get("properties", {}), "lat": lat, "lon": lon})
    else:
        with path.open(newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                yield _sensor(row)


def _sensor(row: dict[str, Any]) -> pb.RegisterSensorRequest:
    def number(name: str) -> float | None:
        value = row.get(name)
        return None if value in (None, "") else float(value)

    thresholds = row.get("thresholds")
    blue, yellow, orange, red = (thresholds if isinstance(thresholds, list) else
                                 [number(n) or 0.0 for n in ("blue", "yellow", "orange", "red")])
    req = pb.RegisterSensorRequest(
        id=str(row["id"]), kind=str(row["kind"]), hazard=str(row["hazard"]),
        location=common_pb2.GeoPoint(lat=float(row["lat"]), lon=float(row["lon"])),
        grid_cell=str(row.get("cell") or ""), unit_of_measure=str(row["unit"]),
        owner=str(row.get("owner") or ""),
        direction=(pb.DIRECTION_LOWER_IS_WORSE if row.get("direction") == "lower_is_worse"
                   else pb.DIRECTION_HIGHER_IS_WORSE),
        thresholds=pb.Thresholds(blue=blue, yellow=yellow, orange=orange, red=red))
    if (deadband := number("deadband")) is not None:
        req.rules.deadband = deadband
    for name in ("on_delay", "off_delay", "expected_interval", "rate_window"):
        if row.get(name):
            getattr(req.rules, name).CopyFrom(duration(str(row[name])))
    low, high = number("valid_min"), number("valid_max")
    if low is not None and high is not None:
        req.rules.valid_range.CopyFrom(pb.ValidRange(min=low, max=high))
    return req


def import_sensors(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    stub, registered, existing = _stub(channel), 0, 0
    batch: list[pb.RegisterSensorRequest] = []

    def send() -> None:
        nonlocal registered, existing
        answer = stub.RegisterSensors(pb.RegisterSensorsRequest(sensors=batch), timeout=600)
        registered += answer.registered
        existing += len(answer.existing)
        batch.clear()

    for req in sensors_in(Path(args.file)):
        batch.append(req)
        if len(batch) == CHUNK:
            send()
    if batch:
        send()
    return clikit.Table(["registered", "already registered"], [[registered, existing]])


def add_commands(sub: Any) -> dict[str, clikit.Command]:
    s = sub.add_parser("shelve", help="silence a sensor for a while (at most 24 h), saying why")
    s.add_argument("sensor")
    s.add_argument("--for", dest="for_", type=duration, required=True, help="e.g. 2h")
    s.add_argument("--reason", required=True)
    s = sub.add_parser("unshelve", help="end a sensor's shelving now")
    s.add_argument("sensor")
    s.add_argument("--reason")
    s = sub.add_parser("import-sensors", help="register the sensors of a CSV or GeoJSON file")
    s.add_argument("file")
    return {"shelve": shelve, "unshelve": unshelve, "import-sensors": import_sensors}
