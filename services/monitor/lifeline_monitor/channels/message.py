"""What a notification says on each channel: one `Outgoing` per delivery, rendered as
plain text, HTML, a JSON document, a chat message, or a short SMS."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from lifeline.common.v1 import common_pb2
from lifeline.events import from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb

L = common_pb2.WarningLevel
COLOUR: dict[int, str] = {L.WARNING_LEVEL_BLUE: "BLUE", L.WARNING_LEVEL_YELLOW: "YELLOW",
          L.WARNING_LEVEL_ORANGE: "ORANGE", L.WARNING_LEVEL_RED: "RED"}
#: The version of the webhook document (`type` says what it is).
PAYLOAD_TYPE = "lifeline.monitor.notification.v1"


@dataclass(frozen=True)
class Outgoing:
    """One delivery of one notification (a party, a warning, a round)."""

    notification: pb.PartyNotification
    #: The signed acknowledgement link for this party and warning.
    ack_url: str
    #: What an SMS reply says to acknowledge ("ACK 123456").
    keyword: str
    #: Stable per notification round: a receiver drops a repeat by it.
    message_id: str
    sent_at: datetime

    @property
    def colour(self) -> str:
        return COLOUR.get(self.notification.level, "NONE")

    @property
    def subject(self) -> str:
        n = self.notification
        place = n.cell_name or n.grid_cell
        return f"[{self.colour}] {n.hazard.replace('_', ' ')} at {place}"

    def text(self) -> str:
        n = self.notification
        lines = [self.subject, "",
                 f"Warning: {n.warning_id}",
                 f"You are notified as: {n.role}" + (f" ({n.post})" if n.post else ""),
                 f"District: {n.district or '-'}"]
        if n.HasField("evidence") and n.evidence.sensor_id:
            lines.append(f"Evidence: {n.evidence.sensor_id} read {n.evidence.value:g}")
        if n.HasField("ack_deadline"):
            lines.append(f"Acknowledge by: {from_timestamp(n.ack_deadline):%Y-%m-%d %H:%M} UTC "
                         "(then the next step is notified)")
        lines += ["", f"Acknowledge: {self.ack_url}"]
        return "\n".join(lines)

    def html(self) -> str:
        body = "".join(f"<p>{html.escape(line)}</p>" for line in self.text().split("\n")[2:-2]
                       if line)
        return (f"<html><body><h2>{html.escape(self.subject)}</h2>{body}"
                f'<p><a href="{html.escape(self.ack_url)}">Acknowledge this warning</a></p>'
                "</body></html>")

    def sms(self) -> str:
        return f"{self.subject} ({self.notification.warning_id}). Reply {self.keyword} to " \
               f"acknowledge, or open {self.ack_url}"

    def document(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"type": PAYLOAD_TYPE, "id": self.message_id,
                "sent_at": self.sent_at.isoformat(), "ack_url": self.ack_url,
                "notification": json_format.MessageToDict(self.notification)}

    def chat(self) -> dict[str, Any]:
        """A Slack / Mattermost incoming-webhook message (`text` in their markdown)."""
        return {"text": f"*{self.subject}*\n{self.text().split(chr(10), 2)[2]}",
                "username": "Lifeline"}

    def json(self) -> bytes:
        return json.dumps(self.document(), separators=(",", ":")).encode()
