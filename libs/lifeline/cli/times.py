"""Field times on the command line: shown in the city's zone for people (UTC in JSON), and
read in it when given without one."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from lifeline.cli.connection import environment
from lifeline.cli.errors import fail
from lifeline.cli.session import options


def zone() -> tzinfo:
    name = options().tz or environment().timezone
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--tz / LIFELINE_TIMEZONE: {name!r} is not a time zone (e.g. Asia/Shanghai)")


def zone_name() -> str:
    return str(zone())


def when(ts: Timestamp) -> str:
    """A field time for people: in the city's zone, to the second; empty when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).astimezone(zone()).strftime("%Y-%m-%d %H:%M:%S")


def times_caption() -> str:
    return f"times in {zone_name()}"


def timestamp(text: str) -> Timestamp:
    """An ISO-8601 time given on the command line (in the city's zone when none is given)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {text!r} (e.g. "
                                 "2026-07-20T14:05:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone())
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts
