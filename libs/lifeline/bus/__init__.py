"""The bus: NATS JetStream between the services, an outbox relay out, inboxes in.

Outbox (`relay`): the relay follows the application's notification log in order and
publishes each event with `Nats-Msg-Id` = the event's identity; only after JetStream
acknowledged a batch does it record how far it got. Nothing writes to the store and the
broker in one breath. A stream is a cache of the outbox: the relay recreates and refills
it when it is lost.

Inbox (`inbox`, `ordering`, `parked`): durable pull consumers; what a handler does with a
message is written in the same transaction as the message's event identity, so a
redelivery, a republish or a recreated stream changes nothing. One aggregate's events are
applied in version order; a message that keeps failing is parked while everything else
flows on.

Names and connections: `subjects` (subjects, headers, identity), `streams` (connect,
streams and what they and their consumers say).
"""

from lifeline.bus.inbox import (
                                ACK_WAIT_SECONDS,
                                HEARTBEAT_SECONDS,
                                LANES,
                                MAX_ATTEMPTS,
                                OFF_PATH_LINGER_SECONDS,
                                Handler,
                                Inbox,
)
from lifeline.bus.ordering import EARLY_WAIT_SECONDS, MAX_EARLY, Delivery
from lifeline.bus.relay import SAVE_POSITION_SECONDS, STREAM_CHECK_SECONDS, OutboxRelay
from lifeline.bus.streams import DUPLICATE_WINDOW_SECONDS, connect, ensure_stream
from lifeline.bus.subjects import (
                                POSITION_HEADER,
                                SCHEMA_HEADER,
                                SCHEMA_VERSION,
                                TYPE_HEADER,
                                subject_for,
)

__all__ = [
    "ACK_WAIT_SECONDS", "DUPLICATE_WINDOW_SECONDS", "EARLY_WAIT_SECONDS", "HEARTBEAT_SECONDS",
    "LANES", "MAX_ATTEMPTS", "MAX_EARLY", "OFF_PATH_LINGER_SECONDS", "POSITION_HEADER",
    "SAVE_POSITION_SECONDS", "SCHEMA_HEADER", "SCHEMA_VERSION", "STREAM_CHECK_SECONDS",
    "TYPE_HEADER", "Delivery", "Handler", "Inbox", "OutboxRelay", "connect", "ensure_stream",
    "subject_for",
]
