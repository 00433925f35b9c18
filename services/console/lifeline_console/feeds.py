"""The picture's sources: the services' watch streams, each followed for as long as the
console runs and watched again (from a fresh snapshot) whenever it breaks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import h3
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc

from lifeline_console.picture import Doc, Picture

log = logging.getLogger(__name__)

#: Waits between attempts to watch again: doubling from the first to the last.
RETRY_FIRST, RETRY_LAST = 0.2, 5.0
GONE_WARNINGS = {"WARNING_STATUS_CLEARED"}
GONE_INCIDENTS = {"INCIDENT_STATE_CLOSED", "INCIDENT_STATE_DISMISSED"}


def as_doc(message: Message) -> Doc:
    return MessageToDict(message, preserving_proto_field_name=True)


def cell_outline(cell: str) -> list[list[float]]:
    """An H3 cell's outline as [lat, lon] corners; none for a cell id that is not one."""
    try:
        return [[round(lat, 6), round(lon, 6)] for lat, lon in h3.cell_to_boundary(cell)]
    except (ValueError, h3.H3BaseException):
        return []


def warning_doc(warning: monitor_pb2.Warning) -> Doc | None:
    doc = as_doc(warning)
    if doc.get("status") in GONE_WARNINGS:
        return None
    doc["outline"] = cell_outline(warning.grid_cell)
    return doc


def incident_doc(incident: Any) -> Doc | None:
    doc = as_doc(incident)
    return None if doc.get("state") in GONE_INCIDENTS else doc


Taken = list[tuple[str, str, Doc | None]]


@dataclass(frozen=True)
class Feed:
    """One service's watch: the kinds it owns in the picture, how a message becomes
    (kind, key, doc) puts, and how to open it."""

    kinds: tuple[str, ...]
    take: Callable[[Any], Taken]
    open: Callable[[], Any]


class Feeds:
    """Follows monitor's warnings, dispatch's incidents and resources' fleet, roads, depots
    and coverage into one picture, with the console's own (viewer) token."""

    def __init__(self, picture: Picture, channels: dict[str, grpc.aio.Channel],
                 token: str) -> None:
        self.picture = picture
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(channels["monitor"])
        self.dispatch = dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"])
        self.resources = resources_pb2_grpc.ResourcesServiceStub(channels["resources"])
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        follow = {
            "monitor": Feed(("warning",), self._warning, lambda: self.monitor.WatchWarnings(
                monitor_pb2.WatchWarningsRequest(), metadata=self.metadata)),
            "dispatch": Feed(("incident",), self._incident, lambda: self.dispatch.WatchIncidents(
                dispatch_pb2.WatchIncidentsRequest(), metadata=self.metadata)),
            "resources": Feed(("unit", "road", "depot", "coverage"), self._resource,
                              lambda: self.resources.WatchResources(
                                  resources_pb2.WatchResourcesRequest(),
                                  metadata=self.metadata)),
        }
        self._tasks = [asyncio.create_task(self._follow(name, feed), name=f"feed {name}")
                       for name, feed in follow.items()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _status(self, service: str, state: str, detail: str = "") -> None:
        self.picture.put("feed", service, {
            "service": service, "state": state, "detail": detail,
            "since": datetime.now(UTC).isoformat(timespec="seconds")})
        await self.picture.notify()

    async def _follow(self, service: str, feed: Feed) -> None:
        wait = RETRY_FIRST
        await self._status(service, "connecting")
        while True:
            try:
                if await self._read(service, feed):
                    wait = RETRY_FIRST
                await self._status(service, "reconnecting", "the watch ended")
            except grpc.aio.AioRpcError as error:
                detail = f"{error.code().name}: {error.details()}"
                log.warning("%s watch broke (%s); watching again in %.1fs", service, detail, wait)
                await self._status(service, "reconnecting", detail)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_LAST)

    async def _read(self, service: str, feed: Feed) -> bool:
        """Follow one watch until it ends; whether it got as far as live changes."""
        snapshot: dict[str, dict[str, Doc]] = {kind: {} for kind in feed.kinds}
        live = False
        stream: AsyncIterator[Any] = feed.open()
        async for message in stream:
            if message.caught_up:
                for kind, docs in snapshot.items():
                    self.picture.replace(kind, docs.items())
                live = True
                await self._status(service, "live")
                continue
            for kind, key, doc in feed.take(message):
                if live:
                    self.picture.put(kind, key, doc)
                elif doc is not None:
                    snapshot.setdefault(kind, {})[key] = doc
            if live:
                await self.picture.notify()
        return live

    @staticmethod
    def _warning(message: monitor_pb2.WatchWarningsResponse
                 ) -> Taken:
        return [("warning", message.warning.id, warning_doc(message.warning))]

    @staticmethod
    def _incident(message: dispatch_pb2.WatchIncidentsResponse
                  ) -> Taken:
        return [("incident", message.incident.id, incident_doc(message.incident))]

    def _resource(self, message: resources_pb2.WatchResourcesResponse
                  ) -> Taken:
        kind = message.WhichOneof("change")
        if kind is None:
            return []
        if kind == "position":
            known = self.picture.things["unit"].get(message.position.unit_id)
            if known is None:
                return []
            moved = as_doc(message.position)
            return [("unit", message.position.unit_id, {
                **known, "position": moved["position"], "position_at": moved["measured_at"]})]
        view = getattr(message, kind)
        key = view.requirement_id if kind == "coverage" else view.id
        if kind == "road" and not view.closed:
            return [("road", key, None)]  # the map shows closed roads; open ones are the base
        return [(kind, key, as_doc(view))]
