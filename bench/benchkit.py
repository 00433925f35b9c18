"""What the benches share: an embedded PostgreSQL of their own, and figures printed the
same way (median and p99 in milliseconds)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lifeline.embedded import EmbeddedPostgres


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timing(name: str, millis: list[float], width: int = 58, digits: int = 2) -> str:
    """`name  median X ms  p99 Y ms  (n=N)`."""
    return (f"{name:<{width}} median {statistics.median(millis):7.{digits}f} ms   "
            f"p99 {percentile(millis, 0.99):7.{digits}f} ms   (n={len(millis)})")


@contextmanager
def embedded_postgres(prefix: str) -> Iterator[tuple[Path, Callable[[str], str]]]:
    """A scratch folder and a PostgreSQL of the bench's own in it; yields the folder and
    `database(name)`, which creates a database and gives its DSN. Gone afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"lifeline-bench-{prefix}-"))
    postgres = EmbeddedPostgres(root / "postgres")
    postgres.start()

    def database(name: str) -> str:
        postgres.create_database(name)
        return postgres.dsn(name)

    try:
        yield root, database
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
