"""A sensor's alarm rules between the contract (`lifeline.monitor.v1.AlarmRules`) and the
rules engine's plain values (`lifeline_monitor.rules`): checked, completed with the sensor
kind's defaults at registration (so the history says which rules applied), and turned into
`Rules`."""

from __future__ import annotations

import math

from google.protobuf.duration_pb2 import Duration
from lifeline.errors import InvalidArgument
from lifeline.monitor.v1 import monitor_pb2 as pb

from lifeline_monitor import rules as r

DAY = 86_400
MAX_DELAY = DAY  # on- and off-delay
MIN_INTERVAL, MAX_INTERVAL = 10, 7 * DAY  # expected interval
MIN_WINDOW, MAX_WINDOW = 60, 7 * DAY  # rate window
MAX_SHELVING = DAY  # OPC UA's MaxTimeShelved


def seconds(field: str, value: Duration, low: float = 0, high: float = MAX_DELAY) -> float:
    """A duration as seconds, or INVALID_ARGUMENT naming the field."""
    if not 0 <= value.nanos <= 999_999_999 or value.seconds < 0:
        raise InvalidArgument(field, "must be a positive duration")
    total = value.seconds + value.nanos / 1e9
    if total and not low <= total <= high:
        raise InvalidArgument(field, f"must be between {low:g} s and {high:g} s (0: off)")
    return total


def duration(total: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(total * 1e9))
    return d


def effective_rules(req: pb.RegisterSensorRequest) -> pb.AlarmRules:
    """The rules a sensor will be judged by: the registration's, else its kind's defaults."""
    given, out = req.rules, pb.AlarmRules()
    kind = r.defaults_for(req.kind)
    unit = req.unit_of_measure
    if given.HasField("deadband"):
        if not math.isfinite(given.deadband) or given.deadband < 0:
            raise InvalidArgument("rules.deadband", "must be zero or more")
        out.deadband = given.deadband
    else:
        out.deadband = kind.deadband.get(unit, 0.0)
    for name in ("on_delay", "off_delay"):
        if given.HasField(name):
            getattr(out, name).CopyFrom(duration(seconds(f"rules.{name}", getattr(given, name))))
        elif getattr(kind, name):
            getattr(out, name).CopyFrom(duration(getattr(kind, name)))
    if given.HasField("expected_interval"):
        out.expected_interval.CopyFrom(duration(seconds(
            "rules.expected_interval", given.expected_interval, MIN_INTERVAL, MAX_INTERVAL)))
    elif kind.expected_interval:
        out.expected_interval.CopyFrom(duration(kind.expected_interval))
    if len(given.rate) > 4:
        raise InvalidArgument("rules.rate", "at most one rate per colour (4)")
    for index, limit in enumerate(given.rate):
        if not (math.isfinite(limit.per_hour) and limit.per_hour > 0):
            raise InvalidArgument(f"rules.rate[{index}].per_hour", "must be a positive rate")
        if limit.level not in r.COLOURS:
            raise InvalidArgument(f"rules.rate[{index}].level", "must be blue, yellow, orange "
                                                                "or red")
    out.rate.extend(given.rate)
    if given.HasField("rate_window"):
        out.rate_window.CopyFrom(duration(seconds("rules.rate_window", given.rate_window,
                                                  MIN_WINDOW, MAX_WINDOW)))
    if given.HasField("valid_range"):
        low, high = given.valid_range.min, given.valid_range.max
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise InvalidArgument("rules.valid_range", "must have min < max")
        out.valid_range.CopyFrom(given.valid_range)
    elif unit in kind.valid_range:
        low, high = kind.valid_range[unit]
        out.valid_range.CopyFrom(pb.ValidRange(min=low, max=high))
    return out


def rules_of(sensor: pb.Sensor) -> r.Rules:
    """The engine's rules for a registered sensor."""
    t, given = sensor.thresholds, sensor.rules
    valid = given.valid_range if given.HasField("valid_range") else None
    window = given.rate_window
    return r.Rules(
        thresholds=(t.blue, t.yellow, t.orange, t.red),
        higher_is_worse=sensor.direction != pb.DIRECTION_LOWER_IS_WORSE,
        deadband=given.deadband,
        on_delay=given.on_delay.seconds + given.on_delay.nanos / 1e9,
        off_delay=given.off_delay.seconds + given.off_delay.nanos / 1e9,
        rate=tuple((limit.per_hour, int(limit.level)) for limit in given.rate),
        rate_window=(window.seconds + window.nanos / 1e9) or 3600.0,
        expected_interval=given.expected_interval.seconds + given.expected_interval.nanos / 1e9,
        valid_min=valid.min if valid else -math.inf,
        valid_max=valid.max if valid else math.inf)
