"""lifeline-monitor's alarm-rule commands: the rules `register` takes, `shelve` /
`unshelve`, and `import-sensors FILE` (CSV or GeoJSON) through RegisterSensors."""

import csv
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.duration_pb2 import Duration
from lifeline.cli import errors, render
from lifeline.common.v1 import common_pb2
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from rich.table import Table

CHUNK = 5_000
LEVELS = {name: getattr(common_pb2, f"WARNING_LEVEL_{name.upper()}")
          for name in ("blue", "yellow", "orange", "red")}
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                      r"(?:(\d+(?:\.\d+)?)s?)?$")


def duration(text: str) -> Duration:
    """2h, 30m, 90s, 1h30m, or plain seconds."""
    match = DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 2h, 30m or 90s")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    d = Duration()
    d.FromNanoseconds(round((((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1e9))
    return d


def rate_limit(text: str) -> pb.RateLimit:
    """PER_HOUR:LEVEL, e.g. 0.3:orange."""
    per_hour, _, level = text.partition(":")
    try:
        return pb.RateLimit(per_hour=float(per_hour), level=LEVELS[level.lower()])
    except (ValueError, KeyError):
        raise typer.BadParameter(f"--rate {text!r}: give PER_HOUR:LEVEL, e.g. 0.3:orange "
                                 "(blue, yellow, orange or red)") from None


def rules(*, deadband: float | None, on_delay: str | None, off_delay: str | None,
          rates: Sequence[str], rate_window: str | None, expected_interval: str | None,
          valid_range: tuple[float, float] | None) -> pb.AlarmRules:
    made = pb.AlarmRules(rate=[rate_limit(r) for r in rates])
    if deadband is not None:
        made.deadband = deadband
    for name, given in (("on_delay", on_delay), ("off_delay", off_delay),
                        ("rate_window", rate_window), ("expected_interval", expected_interval)):
        if given is not None:
            getattr(made, name).CopyFrom(duration(given))
    if valid_range:
        made.valid_range.CopyFrom(pb.ValidRange(min=valid_range[0], max=valid_range[1]))
    return made


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


Stub = Callable[[], monitor_pb2_grpc.MonitorServiceStub]


def add_commands(app: typer.Typer, stub: Stub) -> None:
    @app.command(help="Silence a sensor for a while (at most 24 h), saying why.")
    def shelve(
        sensor: Annotated[str, typer.Argument(help="the sensor's id")],
        for_: Annotated[str, typer.Option("--for", metavar="DURATION",
                                          help="how long, e.g. 2h")],
        reason: Annotated[str, typer.Option(help="why (kept with the sensor)")],
    ) -> None:
        found = stub().ShelveSensor(pb.ShelveSensorRequest(
            id=sensor, duration=duration(for_), reason=reason)).sensor
        render.show(found, lambda: render.describe(found))

    @app.command(help="End a sensor's shelving now.")
    def unshelve(
        sensor: Annotated[str, typer.Argument(help="the sensor's id")],
        reason: Annotated[str, typer.Option(help="why (kept with the sensor)")] = "",
    ) -> None:
        found = stub().UnshelveSensor(pb.UnshelveSensorRequest(id=sensor, reason=reason)).sensor
        render.show(found, lambda: render.describe(found))

    @app.command("import-sensors", help="Register the sensors of a CSV or GeoJSON file, in "
                                        "batches (those already registered are counted).")
    def import_sensors(file: Annotated[Path, typer.Argument(
            help="CSV with a header row naming the columns, or a GeoJSON "
                 "FeatureCollection of points")]) -> None:
        answer = pb.RegisterSensorsResponse()
        batch: list[pb.RegisterSensorRequest] = []

        def send(advance: Callable[[float], None]) -> None:
            done = stub().RegisterSensors(pb.RegisterSensorsRequest(sensors=batch),
                                          timeout=600)
            answer.registered += done.registered
            answer.existing.extend(done.existing)
            advance(len(batch))
            batch.clear()

        with render.progress("registering sensors", None) as advance:
            try:
                for request in sensors_in(file):
                    batch.append(request)
                    if len(batch) == CHUNK:
                        send(advance)
            except (OSError, ValueError, KeyError, typer.BadParameter) as error:
                errors.fail(f"{file}: {error}")
            if batch:
                send(advance)

        def people() -> Table:
            grid = render.table("registered", "already registered")
            render.add_row(grid, answer.registered, len(answer.existing))
            return grid
        render.show(answer, people)
