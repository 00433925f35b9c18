"""Monitor's gRPC face."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
from lifeline import names
from lifeline.common.v1 import names_pb2
from lifeline.edge import acting, cause_of, check_enum, check_location, check_name, required
from lifeline.errors import InvalidArgument
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from lifeline.runtime import Runtime

from lifeline_monitor import alarms, grid, outcomes
from lifeline_monitor.application import MAX_READINGS_PER_CALL, MonitorApp
from lifeline_monitor.readings import checked_readings
from lifeline_monitor.server_alerts import AlertingServicer
from lifeline_monitor.server_rosters import RosterServicer

Ctx = grpc.aio.ServicerContext
#: What a watch's snapshot holds: the warnings not cleared.
NOT_CLEARED = [pb.WarningStatus.Name(pb.WARNING_STATUS_ACTIVE),
               pb.WarningStatus.Name(pb.WARNING_STATUS_ACKNOWLEDGED)]


class MonitorServicer(AlertingServicer, RosterServicer,
                      monitor_pb2_grpc.MonitorServiceServicer):
    #: The hazards monitor knows (set by bootstrap).
    names: names.Catalog

    def __init__(self, runtime: Runtime[MonitorApp], app: MonitorApp) -> None:
        self.rt, self.app = runtime, app

    async def RegisterSensor(self, request: pb.RegisterSensorRequest, context: Ctx
                             ) -> pb.RegisterSensorResponse:
        self.names.check("hazard", names.HAZARD, request.hazard, new_names=request.new_names)
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: app.register_sensor(request, cause, self.rt.now()),
            lambda sensor: pb.RegisterSensorResponse(sensor=sensor))

    async def GetSensor(self, request: pb.GetSensorRequest, context: Ctx) -> pb.GetSensorResponse:
        sensor = await self.rt.views.require("sensor", request.id, pb.Sensor)
        return pb.GetSensorResponse(sensor=self.app.live(sensor))

    async def ListSensors(self, request: pb.ListSensorsRequest, context: Ctx
                          ) -> pb.ListSensorsResponse:
        sensors, token = await self.rt.views.page(
            "sensor", pb.Sensor, page_size=request.page.page_size,
            page_token=request.page.page_token, category=request.kind)
        return pb.ListSensorsResponse(sensors=[self.app.live(s) for s in sensors],
                                      next_page_token=token)

    async def IngestReadings(self, request_iterator: AsyncIterator[pb.IngestReadingsRequest],
                             context: Ctx) -> pb.IngestReadingsResponse:
        # Gathered into a batch's container, as IngestReadingBatch receives them: a list of
        # 10,000 message objects kept the collector busy under the engine's lock.
        batch = pb.IngestReadingBatchRequest()
        readings = batch.readings
        async for item in request_iterator:
            readings.append(item.reading)
            if len(readings) > MAX_READINGS_PER_CALL:
                break  # ingest() refuses the call with a clear message
        return await self._ingest(readings, context)

    async def IngestReadingBatch(self, request: pb.IngestReadingBatchRequest, context: Ctx
                                 ) -> pb.IngestReadingsResponse:
        # The container itself, not a list of its 10,000 messages (each a Python object
        # that would outlive young-generation collections, and trigger full ones).
        return await self._ingest(request.readings, context)

    async def _ingest(self, readings: Sequence[pb.Reading], context: Ctx
                      ) -> pb.IngestReadingsResponse:
        actor, _ = acting()
        columns = checked_readings(readings)
        return await self.rt.command(
            lambda app: app.ingest(readings, actor, self.rt.now(), columns),
            lambda answer: answer)

    async def RegisterSensors(self, request: pb.RegisterSensorsRequest, context: Ctx
                              ) -> pb.RegisterSensorsResponse:
        known = self.names.in_registry()
        for index, sensor in enumerate(request.sensors):
            self.names.check(f"sensors[{index}].hazard", names.HAZARD, sensor.hazard,
                             new_names=sensor.new_names, registered=known)
            known[names.HAZARD].add(sensor.hazard)  # a new one is known to those after it
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: app.register_sensors(request.sensors, cause, self.rt.now()),
            lambda answer: answer)

    async def ShelveSensor(self, request: pb.ShelveSensorRequest, context: Ctx
                           ) -> pb.ShelveSensorResponse:
        required(request, "id")
        if not request.HasField("duration"):
            raise InvalidArgument("duration", "is required (at most 24 h)")
        seconds = alarms.seconds("duration", request.duration, 1, alarms.MAX_SHELVING)
        cause = cause_of(self.rt.clock, actor=request.actor, occurred_at=request.occurred_at,
                         reason=request.reason)
        return await self.rt.command(
            lambda app: app.shelve(request.id, seconds, cause, self.rt.now()),
            lambda sensor: pb.ShelveSensorResponse(sensor=self.app.live(sensor)))

    async def UnshelveSensor(self, request: pb.UnshelveSensorRequest, context: Ctx
                             ) -> pb.UnshelveSensorResponse:
        required(request, "id")
        cause = cause_of(self.rt.clock, actor=request.actor, occurred_at=request.occurred_at,
                         reason=request.reason or "unshelved by an operator")
        return await self.rt.command(
            lambda app: app.unshelve(request.id, cause, self.rt.now()),
            lambda sensor: pb.UnshelveSensorResponse(sensor=self.app.live(sensor)))

    async def GetWarning(self, request: pb.GetWarningRequest, context: Ctx
                         ) -> pb.GetWarningResponse:
        warning = await self.rt.views.require("warning", request.id, pb.Warning)
        await outcomes.with_outcomes(self.rt.views, [warning])
        return pb.GetWarningResponse(warning=warning)

    async def ListWarnings(self, request: pb.ListWarningsRequest, context: Ctx
                           ) -> pb.ListWarningsResponse:
        check_enum("status", pb.WarningStatus, request.status, optional=True)
        status = pb.WarningStatus.Name(request.status) if request.status else ""
        warnings, token = await self.rt.views.page(
            "warning", pb.Warning, page_size=request.page.page_size,
            page_token=request.page.page_token, status=status, category=request.hazard)
        await outcomes.with_outcomes(self.rt.views, warnings)
        return pb.ListWarningsResponse(warnings=warnings, next_page_token=token)

    async def WatchWarnings(self, request: pb.WatchWarningsRequest, context: Ctx
                            ) -> AsyncIterator[pb.WatchWarningsResponse]:
        if request.hazard:
            check_name("hazard", request.hazard)
        with self.rt.live.watch("warning", "outcome", what="warning",
                                 rpc=context) as watch:
            # Watching before the snapshot is read, so nothing falls between the two.
            found, position = await self.rt.views.snapshot("warning", pb.Warning, NOT_CLEARED)
            warnings = [w for w in found if request.hazard in ("", w.hazard)]
            await outcomes.with_outcomes(self.rt.views, warnings)
            # The warnings on show, to send again with their outcome when it is decided.
            shown = {w.id: w for w in warnings}
            for warning in warnings:
                yield pb.WatchWarningsResponse(warning=warning, initial=True)
            yield pb.WatchWarningsResponse(caught_up=True)
            async for change in watch.changes(after=position):
                if isinstance(change.doc, pb.OutcomeRecord):
                    earlier = shown.get(change.key)
                    if earlier is None or earlier.outcome == change.doc.outcome:
                        continue
                    warning = pb.Warning()
                    warning.CopyFrom(earlier)
                    warning.outcome, warning.incident_id = (change.doc.outcome,
                                                            change.doc.incident_id)
                else:
                    assert isinstance(change.doc, pb.Warning)
                    if request.hazard not in ("", change.doc.hazard):
                        continue
                    warning = pb.Warning()
                    warning.CopyFrom(change.doc)  # shared with other watches
                    earlier = shown.get(warning.id)
                    if earlier is not None:
                        warning.outcome, warning.incident_id = (earlier.outcome,
                                                                earlier.incident_id)
                if warning.status == pb.WARNING_STATUS_CLEARED:
                    shown.pop(warning.id, None)
                else:
                    shown[warning.id] = warning
                yield pb.WatchWarningsResponse(warning=warning)

    async def ListKnownNames(self, request: names_pb2.ListKnownNamesRequest, context: Ctx
                             ) -> names_pb2.ListKnownNamesResponse:
        return self.names.answer(request)

    async def AcknowledgeWarning(self, request: pb.AcknowledgeWarningRequest, context: Ctx
                                 ) -> pb.AcknowledgeWarningResponse:
        required(request, "id")
        cause = cause_of(self.rt.clock, actor=request.actor, occurred_at=request.occurred_at)
        return await self.rt.command(
            lambda app: app.acknowledge(request.id, cause, self.rt.now()),
            lambda warning: pb.AcknowledgeWarningResponse(warning=warning))

    async def LoadGrid(self, request: pb.LoadGridRequest, context: Ctx) -> pb.LoadGridResponse:
        cause = cause_of(self.rt.clock)
        return await self.rt.command(
            lambda app: grid.load_grid(app, request.districts, request.cells,
                                   self.app.grid_resolution, cause, self.rt.now(),
                                   request.city if request.HasField("city") else None),
            lambda answer: answer)

    async def GetCell(self, request: pb.GetCellRequest, context: Ctx) -> pb.GetCellResponse:
        resolution = self.app.grid_resolution
        if request.cell:
            cell = grid.canonical_cell("cell", request.cell, resolution)
        elif request.HasField("location"):
            check_location("location", request.location)
            cell = grid.cell_of(request.location, resolution)
        else:
            raise InvalidArgument("cell", "is required (or a location)")
        view = await self.rt.read(lambda: grid.cell_view(self.app, cell))
        return pb.GetCellResponse(cell=view, resolution=resolution)

    async def GetPrecision(self, request: pb.GetPrecisionRequest, context: Ctx
                           ) -> pb.GetPrecisionResponse:
        if request.grid_cell:
            grid.canonical_cell("grid_cell", request.grid_cell, self.app.grid_resolution)
        records = await outcomes.decided(self.rt.views, request.hazard)
        return outcomes.precision(records, sensor_id=request.sensor_id, hazard=request.hazard,
                                  grid_cell=request.grid_cell)
