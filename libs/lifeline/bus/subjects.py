"""How events are named and labelled on NATS: subjects, headers, event identity.

The event identity is what a consumer reads back from a message."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from google.protobuf.message import Message
from nats.aio.msg import Msg

from lifeline.events import event_of, meta_of

TYPE_HEADER = "Lifeline-Type"
SCHEMA_HEADER = "Lifeline-Schema"
SCHEMA_VERSION = "v1"
#: The event's position in its service's outbox (notification id): what a consumer says
#: it took when its durable is recreated, so that the relay knows what to republish.
POSITION_HEADER = "Lifeline-Position"
MAX_IDENTITY = 200


def subject_for(service: str, wrapper: Message, aggregate_class: Any = None) -> str:
    """lifeline.<service>.<aggregate>.<event>, e.g. lifeline.dispatch.incident.declared; an
    aggregate class with a `subject_key(wrapper)` puts that token before the event (monitor's
    notifications: lifeline.monitor.notification.<party>.notified), so a subscriber can be
    permitted exactly its own."""
    aggregate = _snake(wrapper.DESCRIPTOR.name.removesuffix("Event"))
    key = getattr(aggregate_class, "subject_key", None)
    middle = f"{aggregate}.{key(wrapper)}" if key is not None else aggregate
    return f"lifeline.{service}.{middle}.{event_of(wrapper)[0]}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def identity_of(msg: Msg, message_type: type[Message] | None) -> tuple[str, int] | None:
    """The event's identity: from Nats-Msg-Id (what the relay sets), else its EventMeta."""
    msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
    aggregate_id, _, version = msg_id.rpartition("/")
    if aggregate_id and version.isdigit() and len(msg_id) <= MAX_IDENTITY:
        return aggregate_id, int(version)
    if message_type is not None:
        with contextlib.suppress(Exception):
            meta = meta_of(message_type.FromString(msg.data))
            if meta.aggregate_id and meta.sequence and len(meta.aggregate_id) <= MAX_IDENTITY:
                return meta.aggregate_id, int(meta.sequence)
    return None


def position_of(msg: Msg) -> int | None:
    """The message's position in its upstream's outbox, when the relay said it."""
    text = (msg.headers or {}).get(POSITION_HEADER, "")
    return int(text) if text.isdigit() and len(text) < 20 else None


def describe(error: BaseException) -> str:
    # Kept with a parked message and shown to operators: bounded.
    return f"{type(error).__name__}: {error}"[:500]
