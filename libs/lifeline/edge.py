"""Helpers the four servicers share: who is acting, when, and required fields."""

from __future__ import annotations

import re
from typing import Any

import grpc
from google.protobuf.message import Message

from lifeline.clock import Clock
from lifeline.common.v1.common_pb2 import GeoPoint
from lifeline.errors import InvalidArgument
from lifeline.events import Cause, from_timestamp

ACTOR_METADATA = "lifeline-actor"


def actor_of(context: grpc.aio.ServicerContext, given: str = "", fallback: str = "operator"
             ) -> str:
    """The acting person or system: the request's field, else call metadata, else fallback."""
    if given:
        return given
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and isinstance(value, str) and value:
            return value
    return fallback


def cause_of(context: grpc.aio.ServicerContext, clock: Clock, *, actor: str = "",
             occurred_at: Message | None = None, reason: str = "") -> Cause:
    """A Cause from a request: field time when given, else the clock's now."""
    now = clock.now()
    when = now
    if occurred_at is not None and occurred_at.ByteSize():
        when = from_timestamp(occurred_at)  # type: ignore[arg-type]
    return Cause(actor=actor_of(context, actor), occurred_at=when, reason=reason)


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


def required(request: Message, *fields: str) -> None:
    for field in fields:
        value = getattr(request, field)
        if isinstance(value, str) and not value.strip():
            raise InvalidArgument(field, "is required")
