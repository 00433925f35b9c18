"""An alert taken in from another agency, as an aggregate keyed by its sender and
identifier: imported (placed or unplaced), then placed or dismissed by a person, or
superseded by a later alert of its chain."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.utils import register_topic
from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.events import ProtoAggregate, event_of, meta_of, stable_id
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.views import ViewRow

L = common_pb2.WarningLevel
S = pb.CapAlertStatus


def alert_id_of(sender: str, identifier: str) -> UUID:
    return stable_id("cap-alert", sender, identifier)


def targets_of(imported: pb.CapAlertImported) -> list[pb.CapTarget]:
    """Where an import put its alert (one recorded before targets were kept: its one
    hazard and colour on its cells)."""
    if imported.targets or imported.unplaced:
        return list(imported.targets)
    if not imported.grid_cells or imported.level == L.WARNING_LEVEL_NONE:
        return []
    return [pb.CapTarget(hazard=imported.hazard, level=imported.level,
                         grid_cells=imported.grid_cells)]


class CapAlertAggregate(ProtoAggregate):
    """One alert taken in from another agency."""

    EVENT_TYPE = pb.CapAlertEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        if field == "imported":
            self.imported: pb.CapAlertImported = event
            status = (S.CAP_ALERT_STATUS_CANCELLED if event.msg_type == "Cancel"
                      else S.CAP_ALERT_STATUS_UNPLACED if event.unplaced
                      else S.CAP_ALERT_STATUS_PLACED)
            self.view = pb.ImportedCapAlert(
                sender=event.sender, identifier=event.identifier, msg_type=event.msg_type,
                sent=meta_of(wrapper).occurred_at, status=status, hazard=event.hazard,
                level=event.level, headline=event.headline, infos=event.infos,
                targets=targets_of(event), references=event.references, source=event.source,
                duty_party=event.duty_party)
        elif field == "placed":
            self.view.status = S.CAP_ALERT_STATUS_PLACED
            del self.view.targets[:]
            self.view.targets.extend(event.targets)
            self.view.decided_by = event.meta.actor
        elif field == "dismissed":
            self.view.status = S.CAP_ALERT_STATUS_DISMISSED
            self.view.decided_by = event.meta.actor
            self.view.reason = event.reason
        elif field == "superseded":
            self.view.status = (S.CAP_ALERT_STATUS_CANCELLED if event.msg_type == "Cancel"
                                else S.CAP_ALERT_STATUS_UPDATED)
            self.view.superseded_by = event.identifier

    @property
    def status(self) -> int:
        return int(self.view.status)


def rows_for(aggregate: CapAlertAggregate) -> list[ViewRow]:
    view = aggregate.view
    return [ViewRow("cap_alert", f"{view.sender}|{view.identifier}", view,
                    status=S.Name(view.status), category=view.duty_party)]


# Histories stored before this module was split name the old module.
register_topic("lifeline_monitor.cap:CapAlertAggregate", CapAlertAggregate)
