"""The committed stubs are what protos/ generates, and every event carries EventMeta."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from lifeline import protogen
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline.review.v1 import review_pb2

LIBS = protogen.ROOT / "libs"
STALE = "the committed stubs under libs/ are out of date with protos/: run `make proto`"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("stubs")
    return out, protogen.generate(out)


def test_every_proto_has_its_stubs(generated: tuple[Path, list[Path]]) -> None:
    out, files = generated
    names = {p.relative_to(out).as_posix() for p in files}
    for proto in protogen.proto_files():
        stem = proto.relative_to(protogen.PROTOS).with_suffix("").as_posix()
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{stem}{suffix}" in names


def test_the_committed_stubs_are_what_protos_generate(
        generated: tuple[Path, list[Path]]) -> None:
    out, files = generated
    assert files
    differ, missing = [], []
    for new in files:
        rel = new.relative_to(out)
        committed = LIBS / rel
        if not committed.exists():
            missing.append(rel.as_posix())
        elif committed.read_bytes() != new.read_bytes():
            differ.append(rel.as_posix())
    assert not missing, f"{STALE} (not committed: {', '.join(missing)})"
    assert not differ, f"{STALE} (differ: {', '.join(differ)})"


def test_no_stub_is_left_from_a_removed_proto(generated: tuple[Path, list[Path]]) -> None:
    out, files = generated
    expected = {p.relative_to(out).as_posix() for p in files}
    committed = {p.relative_to(LIBS).as_posix()
                 for p in (LIBS / "lifeline").rglob("*_pb2*.py*")
                 if "__pycache__" not in p.parts}
    assert committed - expected == set(), f"{STALE} (stale: {sorted(committed - expected)})"


def events_of(wrapper: type[Message]) -> list[FieldDescriptor]:
    descriptor: Descriptor = wrapper.DESCRIPTOR
    return list(descriptor.oneofs_by_name["event"].fields)


def test_every_field_of_an_incident_event_is_an_event_message() -> None:
    fields = events_of(incident_pb2.IncidentEvent)
    # Beside the events, only the hash chain's digest that review hands out with each.
    assert {f.name for f in incident_pb2.IncidentEvent.DESCRIPTOR.fields} - {
        f.name for f in fields} == {"chain_digest"}
    assert {"opened", "declared", "unit_assigned", "closed", "dismissed"} <= {
        f.name for f in fields}
    assert all(f.type == FieldDescriptor.TYPE_MESSAGE for f in fields)


WRAPPERS = [incident_pb2.IncidentEvent, monitor_pb2.SensorEvent, monitor_pb2.WarningEvent,
            resources_pb2.UnitEvent, resources_pb2.RequestEvent, review_pb2.HistoryEvent]
EVENTS = [(w, f) for w in WRAPPERS for f in events_of(w)]


@pytest.mark.parametrize(("wrapper", "field"), EVENTS,
                         ids=[f"{w.DESCRIPTOR.name}.{f.name}" for w, f in EVENTS])
def test_every_event_has_event_meta_first(wrapper: type[Message],
                                          field: FieldDescriptor) -> None:
    event = field.message_type
    meta = event.fields_by_name.get("meta")
    assert meta is not None, f"{event.full_name} has no meta field"
    assert meta.type == FieldDescriptor.TYPE_MESSAGE
    assert meta.message_type.full_name == "lifeline.common.v1.EventMeta"
    assert meta.number == 1
    assert not meta.is_repeated
