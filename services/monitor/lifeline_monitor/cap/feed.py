"""A warning's CAP feed: every state change of a warning is one alert (`Alert` for the raise,
`Update` for a change, `Cancel` for the clear), each after the first naming its predecessor
in `references`, published once on `lifeline.monitor.cap_feed.published`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import register_topic
from google.protobuf.message import Message
from lifeline.errors import InvalidArgument, NotFound
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, stable_id
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication

from lifeline_monitor import grid
from lifeline_monitor.cap.encode import alert
from lifeline_monitor.cap.mapping import MSG_TYPES
from lifeline_monitor.domain import HazardWatch, watch_id_of


class CapFeed(ProtoAggregate):
    """A warning's CAP alerts as published, one per state change."""

    EVENT_TYPE = pb.CapFeedEvent

    def when(self, wrapper: Message) -> None:
        _, event = event_of(wrapper)
        self.last: pb.CapAlert = event.alert
        self.warning: pb.Warning = event.warning


def feed_id_of(warning_id: str) -> UUID:
    return stable_id("cap-feed", warning_id)


def changed(warning: pb.Warning | None, field: str, event: Any
            ) -> tuple[pb.Warning, str, str] | None:
    """The warning after one of its events, the alert's msgType and note (None: an event
    of a warning whose raise is not known)."""
    if field == "raised":
        return pb.Warning(id=event.warning_id, hazard=event.hazard, grid_cell=event.grid_cell,
                          location=event.location, level=event.level,
                          evidence=event.evidence, responsible=event.responsible,
                          coupled_rule=event.coupled_rule, sources=event.sources), "Alert", ""
    if warning is None or field not in MSG_TYPES:
        return None
    after = pb.Warning()
    after.CopyFrom(warning)
    note = ""
    if field == "updated":
        after.level = event.level
        if event.HasField("evidence"):
            after.evidence.CopyFrom(event.evidence)
    elif field == "acknowledged":
        note = f"acknowledged by {event.meta.actor}"
    elif field == "cleared":
        note = "the warning was cleared"
    return after, MSG_TYPES[field], note


def geocodes_of(app: ServiceApplication, warning: pb.Warning) -> list[pb.Geocode]:
    """The administrative codes of the warning's district, as the grid holds them now."""
    if not warning.responsible.district:
        return []
    district = app.find(grid.District, grid.district_id_of(warning.responsible.district))
    return list(district.view.geocodes) if district is not None else []


def published(app: ServiceApplication, field: str, event: Any, cause: Cause, now: datetime
              ) -> list[Any]:
    """A warning event came by: publish its CAP alert, built from the one before."""
    feed = app.find(CapFeed, feed_id_of(event.warning_id))
    moved = changed(feed.warning if feed is not None else None, field, event)
    if moved is None:
        return []
    warning, msg_type, note = moved
    made = alert(warning, msg_type, event.meta.sequence, from_timestamp(event.meta.occurred_at),
                 feed.last if feed is not None else None, note, geocodes_of(app, warning))
    message = pb.CapAlertPublished(warning_id=event.warning_id, alert=made, warning=warning)
    if feed is None:
        return [CapFeed.start(feed_id_of(event.warning_id), "published", message, cause, now)]
    feed.record("published", message, cause, now)
    return [feed]


def alerts_for(app: ServiceApplication, warning_id: str) -> list[pb.CapAlert]:
    """Every state change of the warning as a CAP alert, oldest first (from the watch's
    events: what the feed published, and also what it has yet to)."""
    parts = warning_id.split("/")
    if len(parts) != 3:
        raise InvalidArgument("warning_id", "a warning id looks like <grid cell>/<hazard>/<n>")
    alerts: list[pb.CapAlert] = []
    warning: pb.Warning | None = None
    for stored in app.events.get(watch_id_of(parts[0], parts[1])):
        wrapper = HazardWatch.decode(stored.payload)  # type: ignore[attr-defined]
        field, event = event_of(wrapper)
        if event.warning_id != warning_id:
            continue
        moved = changed(warning, field, event)
        if moved is None:
            continue
        warning, msg_type, note = moved
        alerts.append(alert(warning, msg_type, event.meta.sequence,
                            from_timestamp(event.meta.occurred_at),
                            alerts[-1] if alerts else None, note, geocodes_of(app, warning)))
    if not alerts:
        raise NotFound("warning", warning_id)
    return alerts


# Histories stored before this module was split name the old module.
register_topic("lifeline_monitor.cap:CapFeed", CapFeed)
