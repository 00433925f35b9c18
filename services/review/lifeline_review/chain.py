"""Tamper evidence: each incident history carries a hash chain.

The digest of event n is sha256(digest of event n-1 || the event's canonical bytes), the
first event's predecessor being 32 zero bytes. An event's canonical bytes are its
deterministic protobuf encoding with `chain_digest` cleared (and fields unknown to this
version dropped), so the same history gives the same chain whether it travels as binary or
as NDJSON (canonical JSON parses back to the same message). Editing any event changes its
digest and every digest after it; the first event whose recorded digest does not match is
the one edited (or the first one a forger did not re-chain). A chain proves a file
unchanged since export only as far as its head is known from elsewhere: review keeps the
head of every history (`HistorySummary.chain_head`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from lifeline.events import meta_of
from lifeline.incident.v1 import incident_pb2

GENESIS = bytes(32)


def canonical_bytes(event: incident_pb2.IncidentEvent) -> bytes:
    """Without the digest, and without fields this version does not know (a newer writer's,
    which canonical JSON cannot carry), so a history hashes alike as binary and as NDJSON."""
    bare = incident_pb2.IncidentEvent()
    bare.CopyFrom(event)
    bare.ClearField("chain_digest")
    bare.DiscardUnknownFields()
    return bare.SerializeToString(deterministic=True)


def link(previous: bytes, event: incident_pb2.IncidentEvent) -> bytes:
    return hashlib.sha256(previous + canonical_bytes(event)).digest()


def digests(events: Iterable[incident_pb2.IncidentEvent]) -> list[str]:
    """The chain of a history, hex, one digest per event."""
    out, previous = [], GENESIS
    for event in events:
        previous = link(previous, event)
        out.append(previous.hex())
    return out


def chained(events: Iterable[incident_pb2.IncidentEvent]) -> list[incident_pb2.IncidentEvent]:
    """Copies of the events, each carrying its chain digest (for export)."""
    out, previous = [], GENESIS
    for event in events:
        previous = link(previous, event)
        copy = incident_pb2.IncidentEvent()
        copy.CopyFrom(event)
        copy.chain_digest = previous.hex()
        out.append(copy)
    return out


@dataclass(frozen=True)
class Break:
    """The first event whose recorded digest does not match its recomputed one."""

    index: int
    sequence: int
    recorded: str
    computed: str

    def __str__(self) -> str:
        if not self.recorded:
            return (f"event {self.sequence} carries no chain digest while others do")
        return (f"event {self.sequence} does not match its chain digest (recorded "
                f"{self.recorded[:16]}…, computed {self.computed[:16]}…): it or an event "
                "before it was changed after export")


def first_break(events: list[incident_pb2.IncidentEvent]) -> Break | None:
    """None when every event carries the digest its content and predecessors give (or when
    none carries any: a history exported before chains, unverifiable)."""
    if not any(e.chain_digest for e in events):
        return None
    previous = GENESIS
    for index, event in enumerate(events):
        previous = link(previous, event)
        if event.chain_digest != previous.hex():
            return Break(index, meta_of(event).sequence, event.chain_digest, previous.hex())
    return None


def is_chained(events: list[incident_pb2.IncidentEvent]) -> bool:
    return bool(events) and all(e.chain_digest for e in events)
