"""Helpers the four servicers share: who is acting, when, and required fields."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from lifeline.clock import Clock
from lifeline.common.v1.common_pb2 import GeoPoint
from lifeline.errors import InvalidArgument, PermissionDenied
from lifeline.events import Cause
from lifeline.identity import ANONYMOUS, caller
from lifeline.validation import check_time


def acting(named: str = "") -> tuple[str, str]:
    """(actor, via) of the call being served. The actor is the verified caller; a system
    whose role may act for others can name the person it acts for, and is recorded as via."""
    me = caller()
    if not named or named == me.name:
        return me.name, ""
    if not me.acts_for_others:
        raise PermissionDenied(f"actor: {me.name!r} may act only as itself, not for "
                               f"{named[:40]!r}; leave actor empty")
    return named, "" if me is ANONYMOUS else me.name


def cause_of(clock: Clock, *, actor: str = "", occurred_at: Message | None = None,
             reason: str = "") -> Cause:
    """A Cause from a request: the caller (or whom it acts for), field time when given,
    else the clock's now."""
    when = clock.now()
    if occurred_at is not None and occurred_at.ByteSize():
        when = check_time("occurred_at", occurred_at)
    name, via = acting(actor)
    return Cause(actor=name, via=via, occurred_at=when, reason=reason)


def check_location(field: str, location: GeoPoint) -> None:
    if not (-90 <= location.lat <= 90) or not (-180 <= location.lon <= 180):
        raise InvalidArgument(field, "latitude must be within -90..90 and longitude -180..180")


def check_enum(field: str, enum: Any, value: int, *, optional: bool = False) -> None:
    """A protobuf enum field must hold a value the contract knows (0 only when optional)."""
    known = [v for v in enum.values() if v]
    if value in known or (optional and value == 0):
        return
    names = ", ".join(n.lower() for n in enum.keys() if not n.endswith("UNSPECIFIED"))  # noqa: SIM118 - an enum wrapper, not a dict
    raise InvalidArgument(field, f"{'unknown value ' + str(value) if value else 'is required'};"
                                 f" one of {names}")


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def check_name(field: str, value: str) -> None:
    """Names that become parts of ids and subjects: letters, digits, _ . : - only."""
    if not NAME.match(value):
        raise InvalidArgument(field, f"{value!r} may hold only letters, digits, '_', '.', "
                                     "':' and '-'")


def time_field(request: Message, name: str, *, field: str = "") -> datetime | None:
    """The request's timestamp field `name` as a datetime (None when unset), checked as the
    edge checks every caller's time; `field` names it in an error (default: name)."""
    if not request.HasField(name):
        return None
    return check_time(field or name, getattr(request, name))


def required(request: Message, *fields: str) -> None:
    for field in fields:
        value = getattr(request, field)
        if isinstance(value, str) and not value.strip():
            raise InvalidArgument(field, "is required")
