"""Depots and their stock: materials a plan asks for (sandbags, pumps, life jackets),
reserved for incidents from the nearest depots that hold them.

A depot's stock of a material is split three ways: available (in the depot, free to
reserve), reserved (held for incidents, not yet reported consumed or returned) and
consumed. The Depot aggregate refuses anything that would take more than is there, so
available and reserved never fall below zero; concurrent writers of one depot meet the
event store's optimistic concurrency, and the loser runs its step again on fresh stock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from google.protobuf.message import Message
from lifeline.common.v1 import common_pb2
from lifeline.edge import check_location
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, stable_id
from lifeline.resources.v1 import resources_pb2 as pb

from lifeline_resources.domain import distance_km

#: A need or a quantity as the plans give it: (material name, unit of measure).
Key = tuple[str, str]
#: The single directory of depots.
DIRECTORY_ID = stable_id("depot-directory")
#: The most a depot holds of one material, all told (available, reserved and consumed), so
#: every figure stays well inside its protobuf field, also summed over a few depots.
MAX_QUANTITY = 1_000_000_000


def depot_id_of(depot_id: str) -> UUID:
    return stable_id("depot", depot_id)


def check_materials(field_name: str, materials: Sequence[pb.Material], *,
                    positive: bool) -> None:
    """Each material named once, with a unit, and (when positive) more than zero of it."""
    seen: set[str] = set()
    for index, material in enumerate(materials):
        where = f"{field_name}[{index}]"
        if not material.name.strip():
            raise InvalidArgument(f"{where}.name", "is required")
        if not material.unit.strip():
            raise InvalidArgument(f"{where}.unit", "is required (bag, set, piece, ...)")
        if positive and material.quantity == 0:
            raise InvalidArgument(f"{where}.quantity", "must be more than zero")
        if material.quantity > MAX_QUANTITY:
            raise InvalidArgument(f"{where}.quantity", f"at most {MAX_QUANTITY:,}")
        if material.name in seen:
            raise InvalidArgument(f"{where}.name", f"{material.name!r} is named twice")
        seen.add(material.name)


class Depot(ProtoAggregate):
    EVENT_TYPE = pb.DepotEvent

    def when(self, wrapper: Message) -> None:
        kind, event = event_of(wrapper)
        if kind == "registered":
            self.view = pb.Depot()
            self.view.CopyFrom(event.depot)
        elif kind == "restocked":
            for m in event.materials:
                self._stock(m.name, m.unit).available += m.quantity
        elif kind == "reserved":
            for m in event.materials:
                stock = self._stock(m.name, m.unit)
                stock.available -= m.quantity
                stock.reserved += m.quantity
                self._reservation(event.incident_id, m.name, m.unit).quantity += m.quantity
        elif kind in ("consumed", "returned"):
            for m in event.materials:
                stock = self._stock(m.name, m.unit)
                stock.reserved -= m.quantity
                if kind == "consumed":
                    stock.consumed += m.quantity
                else:
                    stock.available += m.quantity
                held = self._reservation(event.incident_id, m.name, m.unit)
                held.quantity -= m.quantity
            kept = [r for r in self.view.reservations if r.quantity]
            del self.view.reservations[:]
            self.view.reservations.extend(kept)

    def _stock(self, material: str, unit: str) -> pb.Stock:
        for stock in self.view.stock:
            if stock.material == material:
                return stock
        return self.view.stock.add(material=material, unit=unit)

    def _reservation(self, incident_id: str, material: str, unit: str) -> pb.DepotReservation:
        for held in self.view.reservations:
            if held.incident_id == incident_id and held.material == material:
                return held
        return self.view.reservations.add(incident_id=incident_id, material=material,
                                          unit=unit)

    # ---- commands ----

    @classmethod
    def register(cls, req: pb.RegisterDepotRequest, cause: Cause, now: datetime) -> Depot:
        for name in ("id", "department"):
            if not getattr(req, name).strip():
                raise InvalidArgument(name, "is required")
        if not req.HasField("position"):
            raise InvalidArgument("position", "is required")
        check_location("position", req.position)
        check_materials("stock", req.stock, positive=False)
        depot = pb.Depot(id=req.id, name=req.name or req.id, position=req.position,
                         department=req.department,
                         stock=[pb.Stock(material=m.name, unit=m.unit, available=m.quantity)
                                for m in req.stock])
        return cls.start(depot_id_of(req.id), "registered", pb.DepotRegistered(depot=depot),
                         cause, now)

    def available(self, material: str, unit: str) -> int:
        """What can be reserved now of a material kept in this unit (none in another)."""
        stock = self._find(material)
        return stock.available if stock is not None and stock.unit == unit else 0

    def held_for(self, incident_id: str, material: str) -> int:
        return next((r.quantity for r in self.view.reservations
                     if r.incident_id == incident_id and r.material == material), 0)

    def _find(self, material: str) -> pb.Stock | None:
        return next((s for s in self.view.stock if s.material == material), None)

    def _check_units(self, field_name: str, materials: Sequence[pb.Material]) -> None:
        for index, m in enumerate(materials):
            stock = self._find(m.name)
            if stock is not None and stock.unit != m.unit:
                raise InvalidArgument(f"{field_name}[{index}].unit",
                                      f"depot {self.view.id} keeps {m.name} in "
                                      f"{stock.unit!r}, not {m.unit!r}")

    def restock(self, materials: Sequence[pb.Material], cause: Cause, now: datetime) -> None:
        if not materials:
            raise InvalidArgument("materials", "name at least one material delivered")
        check_materials("materials", materials, positive=True)
        self._check_units("materials", materials)
        for index, m in enumerate(materials):
            stock = self._find(m.name)
            held = stock.available + stock.reserved + stock.consumed if stock else 0
            if held + m.quantity > MAX_QUANTITY:
                raise InvalidArgument(f"materials[{index}].quantity",
                                      f"depot {self.view.id} would hold more than "
                                      f"{MAX_QUANTITY:,} {m.unit} of {m.name} all told")
        self.record("restocked", pb.DepotRestocked(depot_id=self.view.id, materials=materials),
                    cause, now)

    def reserve(self, incident_id: str, request_id: str, materials: Sequence[pb.Material],
                cause: Cause, now: datetime) -> None:
        """Hold these for the incident; never more than is available."""
        for m in materials:
            if m.quantity > self.available(m.name, m.unit):
                raise RuleViolation("stock-never-negative",
                                    f"depot {self.view.id} has {self.available(m.name, m.unit)}"
                                    f" {m.unit} of {m.name} available, not {m.quantity}")
        self.record("reserved", pb.MaterialsReserved(
            depot_id=self.view.id, incident_id=incident_id, request_id=request_id,
            materials=materials), cause, now)

    def report_use(self, incident_id: str, use: int, materials: Sequence[pb.Material],
                   cause: Cause, now: datetime) -> None:
        """An incident consumed materials reserved for it, or brought them back."""
        if not materials:
            raise InvalidArgument("materials", "name at least one material")
        check_materials("materials", materials, positive=True)
        self._check_units("materials", materials)
        for index, m in enumerate(materials):
            held = self.held_for(incident_id, m.name)
            if m.quantity > held:
                raise RuleViolation("use-what-was-reserved",
                                    f"materials[{index}]: incident {incident_id} holds {held} "
                                    f"{m.unit} of {m.name} from depot {self.view.id}, not "
                                    f"{m.quantity}")
        kind, event_type = (("consumed", pb.MaterialsConsumed)
                            if use == pb.MATERIAL_USE_CONSUMED else
                            ("returned", pb.MaterialsReturned))
        self.record(kind, event_type(depot_id=self.view.id, incident_id=incident_id,
                                     materials=materials), cause, now)

    def return_all(self, incident_id: str, cause: Cause, now: datetime) -> bool:
        """Put back whatever the incident still holds (it closed); False when nothing."""
        held = [pb.Material(name=r.material, unit=r.unit, quantity=r.quantity)
                for r in self.view.reservations if r.incident_id == incident_id]
        if not held:
            return False
        self.record("returned", pb.MaterialsReturned(depot_id=self.view.id,
                                                     incident_id=incident_id, materials=held),
                    cause, now)
        return True


class DepotDirectory(ProtoAggregate):
    """Every depot and where it is: a request reads it, and the depots it names, in the
    same transaction that reserves, so a new depot is never missed for a lagging view."""

    EVENT_TYPE = pb.DepotDirectoryEvent

    def when(self, wrapper: Message) -> None:
        if not hasattr(self, "positions"):
            self.positions: dict[str, common_pb2.GeoPoint] = {}
        _, event = event_of(wrapper)
        self.positions[event.depot_id] = event.position

    @classmethod
    def listing(cls, directory: DepotDirectory | None, depot: pb.Depot, cause: Cause,
                now: datetime) -> DepotDirectory:
        """The directory with the depot in it (started by the first depot)."""
        listed = pb.DepotListed(depot_id=depot.id, position=depot.position)
        if directory is None:
            return cls.start(DIRECTORY_ID, "listed", listed, cause, now)
        directory.record("listed", listed, cause, now)
        return directory

    def nearest(self, location: common_pb2.GeoPoint) -> list[tuple[str, float]]:
        """Every depot id with its great-circle distance to location, nearest first."""
        return sorted(((depot_id, distance_km(location, p.lat, p.lon))
                       for depot_id, p in self.positions.items()),
                      key=lambda pair: (pair[1], pair[0]))


@dataclass
class MaterialAnswer:
    """What a request got of the materials it asked for."""

    reservations: list[pb.Reservation] = field(default_factory=list)
    shortfalls: list[pb.MaterialShortfall] = field(default_factory=list)
    #: Depots that reserved something, to be recorded with the answer.
    depots: list[Depot] = field(default_factory=list)


def reserve_nearest(needs: Iterable[pb.Material], depots: Iterable[tuple[Depot, float]],
                    incident_id: str, request_id: str, cause: Cause, now: datetime
                    ) -> MaterialAnswer:
    """Reserve each need from the nearest depots that hold it (depots nearest first, with
    their distances), splitting it across depots when one has too little; what none can
    cover is a shortfall. Each depot records one reservation for the request. Depots are
    taken only until every need is covered (the iterable may load them lazily)."""
    left: dict[Key, int] = {}
    for need in needs:
        left[need.name, need.unit] = left.get((need.name, need.unit), 0) + need.quantity
    answer = MaterialAnswer()
    for depot, km in depots:
        if not any(left.values()):
            break
        taking = []
        for (name, unit), wanted in left.items():
            take = min(wanted, depot.available(name, unit))
            if take > 0:
                taking.append(pb.Material(name=name, quantity=take, unit=unit))
                left[name, unit] = wanted - take
        if taking:
            depot.reserve(incident_id, request_id, taking, cause, now)
            answer.depots.append(depot)
            answer.reservations.extend(pb.Reservation(depot_id=depot.view.id, material=m,
                                                      distance_km=round(km, 3))
                                       for m in taking)
    answer.shortfalls = [pb.MaterialShortfall(material=name, unit=unit, missing=missing)
                         for (name, unit), missing in left.items() if missing]
    return answer
