"""An alert taken in from another agency, as an aggregate keyed by its sender and
identifier."""

from __future__ import annotations

from uuid import UUID

from google.protobuf.message import Message
from lifeline.events import ProtoAggregate, event_of, stable_id
from lifeline.monitor.v1 import monitor_pb2 as pb


def alert_id_of(sender: str, identifier: str) -> UUID:
    return stable_id("cap-alert", sender, identifier)


class CapAlertAggregate(ProtoAggregate):
    """One alert taken in from another agency."""

    EVENT_TYPE = pb.CapAlertEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.imported: pb.CapAlertImported = event
