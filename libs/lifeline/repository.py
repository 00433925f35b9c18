"""The event store's repository, with a cached aggregate copied under the lock it is
fast-forwarded under, and a whole history folded as review folds it."""

from __future__ import annotations

import copy
from typing import Any, Self
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository

from lifeline.encoding import ProtoMapper, StoredRows, replay_rows
from lifeline.events import fold


class CopyingRepository(Repository[UUID]):
    """The library's repository, but a cached aggregate is copied under the lock it is
    fast-forwarded under. The library copies it after releasing that lock, so a copy taken
    while another thread (the projector, a consumer) fast-forwards the same aggregate could
    hold two moments at once: a dict that changed size mid-copy, or an incident whose
    version is from before an event and whose state is from after it."""

    @classmethod
    def taking_over(cls, library: Repository[UUID]) -> Self:
        """This repository with the library's one's settings, cache and locks (as the
        library's application made it from its environment)."""
        repository = cls.__new__(cls)
        repository.__dict__.update(library.__dict__)
        return repository

    def get(self, aggregate_id: UUID, *, version: int | None = None,
            projector_func: Any = fold, fastforward_skipping: bool = False,
            deepcopy_from_cache: bool = True) -> Any:
        aggregate = super().get(aggregate_id, version=version, projector_func=projector_func,
                                fastforward_skipping=fastforward_skipping,
                                deepcopy_from_cache=False)
        if self.cache and version is None and deepcopy_from_cache and self.deepcopy_from_cache:
            return self.copied(aggregate_id, aggregate)
        return aggregate

    def _reconstruct_aggregate(self, aggregate_id: UUID, version: int | None,
                               projector_func: Any) -> Any:
        """An aggregate's whole history, folded as `replay_rows` folds a history across
        incidents (no domain event per row; equal to the library's fold, property-tested):
        review reads one long history at a time, and a service reads each aggregate so once
        before its cache holds it."""
        mapper = self.event_store.mapper
        if version is not None or self.snapshot_store is not None \
                or projector_func is not fold or not isinstance(mapper, ProtoMapper):
            return super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        stored = self.event_store.recorder.select_events(aggregate_id)
        if not stored:
            raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
        return replay_rows(mapper, StoredRows(
            aggregate_id, [s.originator_version for s in stored], [s.topic for s in stored],
            [s.state for s in stored]))

    def copied(self, aggregate_id: UUID, cached: Any) -> Any:
        """A copy of a cached aggregate, taken while nobody fast-forwards it."""
        lock = self._use_fastforward_lock(aggregate_id)
        try:
            with lock:
                return copy.deepcopy(cached)
        finally:
            self._disuse_fastforward_lock(aggregate_id)
