"""Keeping Python's cyclic garbage collector out of a service's answers.

A service holds a large, long-lived heap (its modules, the aggregate cache, resources'
fleet index) and answers small requests. With CPython's default thresholds (700, 10, 10)
the collector runs a young collection every few requests and, now and then, a full one
over everything; with a large fleet in memory those pauses were the jitter behind
RecommendUnits' p99 (docs/performance.md).

So a service, once started: collects once and freezes what survived (its modules and
warmed caches are never garbage; frozen objects are skipped by every later collection),
and collects the young generation after 50,000 net allocations instead of 700 (almost
everything a request allocates is freed by reference counting first; what is left are
reference cycles, still found, a little later).
"""

from __future__ import annotations

import gc

#: Net allocations of tracked objects between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def settle() -> None:
    """Call once the service is up: freeze the heap it started with, collect less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
