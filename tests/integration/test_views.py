"""The read model against a real PostgreSQL: a command writes its own views at once, the
projector writes them again later, and a view never goes back to an older version whoever
writes last."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lifeline.common.v1 import common_pb2
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow, Views, create_pool, stored, write_through

pytestmark = pytest.mark.integration


@pytest.fixture
async def views(database_url: str, plain: ServiceApplication) -> AsyncIterator[Views]:
    pool = await create_pool(database_url)
    views = Views(pool, "plain")
    await views.setup()
    yield views
    await pool.close()


def row(key: str, lat: float, status: str = "ok") -> ViewRow:
    return ViewRow("place", key, common_pb2.GeoPoint(lat=lat, lon=121.0), status=status,
                   lat=lat)


async def test_a_view_never_goes_back_to_an_older_version(
        plain: ServiceApplication, views: Views) -> None:
    app = plain
    # A command shows version 3 at once; the projector, behind, writes version 2 after it.
    write_through(app, views.table, stored([(row("a", 3.0), 3), (row("b", 1.0), 1)]))
    await views.save(stored([(row("a", 2.0), 2), (row("b", 2.0), 2)]), position=7)
    shown = {p.lat for p in (await views.page("place", common_pb2.GeoPoint))[0]}
    assert shown == {3.0, 2.0}  # a kept its version 3; b moved on to version 2
    # The same version again (the projector catching up) and a later one are written.
    await views.save(stored([(row("a", 3.0, "again"), 3)]), position=8)
    write_through(app, views.table, stored([(row("a", 4.0), 4), (row("a", 5.0), 5)]))
    a = await views.get("place", "a", common_pb2.GeoPoint)
    assert a is not None and a.lat == 5.0  # a thing twice in one batch: its last row
    assert await views.position() == 8


async def test_rows_with_empty_columns_are_written(plain: ServiceApplication,
                                                   views: Views) -> None:
    bare = ViewRow("place", "bare", common_pb2.GeoPoint())  # no status, place or deadline
    write_through(plain, views.table, stored([(bare, 1)]))
    await views.save([], position=1)
    assert await views.get("place", "bare", common_pb2.GeoPoint) == common_pb2.GeoPoint()
