"""Every request checked at the edge, before any handler runs, from the message descriptors:
strings short and printable, timestamps valid and not in the future, numbers finite, enum
values known, repeated fields bounded. One walk for every RPC of every service, so a new
field is checked the day it is added.

A refusal is INVALID_ARGUMENT naming the field path (`action.reason`, `readings[3].value`)
and the rule, quoting at most a short prefix of the bad value.

Lists that carry a city's traffic (a gateway's 10,000 readings) take a fast lane: one tight
pass that only answers "every item certainly passes"; on any doubt the walk checks the list
as usual and names the first bad field, so the rules and the messages are the walk's. The
service that owns such a list registers its lane (`add_fast_lane`); the edge names no
service's messages.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from lifeline import settings as environment
from lifeline.errors import InvalidArgument

#: Free text people write: longer, and may hold line breaks and tabs.
TEXT_FIELDS = {"description": 2000, "reason": 1000, "instruction": 2000, "text": 4000,
               "note": 2000, "summary": 4000}
#: Everything else a string holds is a name or an id: ids, kinds, hazards, departments...
NAME_LENGTH = 128
#: Repeated fields: at most this many items, unless named here.
REPEATED_LIMITS = {"readings": 10_000, "events": 100_000, "sensors": 10_000,
                   "units": 10_000}
REPEATED_DEFAULT = 1_000
#: Field times a caller may give; not further ahead of this service's clock than the skew.
FIELD_TIMES = {"occurred_at", "measured_at"}
MAX_SKEW = timedelta(seconds=environment.load().max_clock_skew_seconds)
#: Times a caller may send: google.protobuf.Timestamp's range (years 1 to 9999) less a year
#: at each end, so that what a service adds to or takes from a time (a deadline, a window,
#: the skew) is still a datetime.
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
MIN_SECONDS, MAX_SECONDS = math.floor(EARLIEST.timestamp()), math.floor(LATEST.timestamp())
TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
ALLOWED_IN_TEXT = {"\n", "\t"}


def quote(value: str, limit: int = 24) -> str:
    """A bad value as people see it in an error: a short prefix, never the whole thing."""
    return repr(value[:limit] + ("…" if len(value) > limit else ""))


def check_request(message: Message, now: datetime | None = None) -> None:
    """Refuse the request with INVALID_ARGUMENT if any field breaks a rule."""
    _check(message, "", now or datetime.now(UTC))


def _check(message: Message, prefix: str, now: datetime) -> None:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == TIMESTAMP:
        _check_timestamp(message, prefix, now)
        return
    if descriptor.full_name == DURATION:
        return
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                _check_count(path, len(value), field.name)
                for key, item in value.items():
                    _check_value(field.message_type.fields_by_name["key"], key,
                                 f"{path}[{key!r}]", now)
                    _check_value(field.message_type.fields_by_name["value"], item,
                                 f"{path}[{key!r}]", now)
                continue
            _check_count(path, len(value), field.name)
            fast = FAST_LANES.get(field.message_type.full_name) if field.message_type else None
            if fast is not None and fast(value, now):
                continue
            for index, item in enumerate(value):
                _check_value(field, item, f"{path}[{index}]", now)
        else:
            _check_value(field, value, path, now)


def check_items(field: FieldDescriptor, items: Sequence[Any], path: str, now: datetime
                ) -> None:
    """Check each item of a repeated field as the walk does (what a fast lane falls back to
    when a list reaches a handler unchecked)."""
    for index, item in enumerate(items):
        _check_value(field, item, f"{path}[{index}]", now)


def _check_value(field: FieldDescriptor, value: object, path: str, now: datetime) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert isinstance(value, Message)
        _check(value, f"{path}.", now)
        if field.name in FIELD_TIMES and value.DESCRIPTOR.full_name == TIMESTAMP:
            _check_not_future(value, path, now)
    elif kind == FieldDescriptor.TYPE_STRING:
        assert isinstance(value, str)
        _check_string(field.name, value, path)
    elif kind == FieldDescriptor.TYPE_BYTES:
        assert isinstance(value, bytes)
        if len(value) > 64 * 1024:
            raise InvalidArgument(path, "longer than 64 KiB")
    elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        assert isinstance(value, float | int)
        if not math.isfinite(value):
            raise InvalidArgument(path, "must be a finite number")
    elif kind == FieldDescriptor.TYPE_ENUM:
        assert isinstance(value, int) and field.enum_type is not None
        if field.enum_type.values_by_number.get(value) is None:
            known = ", ".join(v.name for v in field.enum_type.values if v.number)
            raise InvalidArgument(path, f"unknown value {value}; one of {known}")


def _check_string(name: str, value: str, path: str) -> None:
    limit = TEXT_FIELDS.get(name, NAME_LENGTH)
    if len(value) > limit:
        raise InvalidArgument(path, f"longer than {limit} characters ({len(value)})")
    allowed = ALLOWED_IN_TEXT if name in TEXT_FIELDS else set()
    for position, char in enumerate(value):
        if char in allowed:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co", "Cn") or (category == "Zl" or category == "Zp"):
            raise InvalidArgument(path, f"holds a control or unassigned character "
                                        f"U+{ord(char):04X} at position {position}")


def _check_count(path: str, count: int, name: str) -> None:
    limit = REPEATED_LIMITS.get(name, REPEATED_DEFAULT)
    if count > limit:
        raise InvalidArgument(path, f"at most {limit} items ({count} given)")


def _check_timestamp(ts: Message, path: str, now: datetime) -> None:
    _check_range(path.removesuffix("."), ts)


def _check_range(field: str, ts: Message) -> None:
    seconds, nanos = ts.seconds, ts.nanos  # type: ignore[attr-defined]
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise InvalidArgument(field, f"outside the time range this service accepts "
                                     f"(years {EARLIEST.year} to {LATEST.year})")
    if not 0 <= nanos <= 999_999_999:
        raise InvalidArgument(field, "nanos must be within 0..999999999")


def check_time(field: str, ts: Message) -> datetime:
    """A request's google.protobuf.Timestamp as a datetime, or INVALID_ARGUMENT naming the
    field: the one conversion of a caller's time (its range is the walk's)."""
    _check_range(field, ts)
    return ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined]


def _check_not_future(ts: Message, path: str, now: datetime) -> None:
    when = datetime.fromtimestamp(ts.seconds, UTC)  # type: ignore[attr-defined]
    if when > now + MAX_SKEW:
        raise InvalidArgument(path, f"{when:%Y-%m-%dT%H:%M:%SZ} is in the future (this "
                                    f"service's clock reads {now:%Y-%m-%dT%H:%M:%SZ})")


# ---- fast lanes: whole lists at once ----

#: Per message type: a check of a whole list of it that answers True only when every item
#: certainly passes the walk (False is doubt, not a refusal: the walk then decides).
FAST_LANES: dict[str, Callable[[Sequence[Any], datetime], bool]] = {}


def add_fast_lane(descriptor: Descriptor, covers: set[str],
                  fine: Callable[[Sequence[Any], datetime], bool]) -> None:
    """Check lists of `descriptor` with `fine`, as long as `covers` names all its fields: a
    field added later turns the lane off, so the walk checks it from its first day."""
    if {f.name for f in descriptor.fields} == covers:
        FAST_LANES[descriptor.full_name] = fine
