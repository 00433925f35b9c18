"""The read model's nearest-first query, against a real PostgreSQL."""

from __future__ import annotations

import random

from lifeline.common.v1 import common_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline.views import ViewRow, Views, create_pool
from lifeline_resources.domain import distance_km


async def test_nearest_ranks_a_citys_fleet_as_great_circle_distance_does(
        database_url: str) -> None:
    pool = await create_pool(database_url)
    views = Views(pool, "public")
    await views.setup()
    rng = random.Random(7)
    units = [(f"A-{n}", 31.0 + rng.random() * 0.5, 121.2 + rng.random() * 0.6)
             for n in range(2000)]
    rows = [ViewRow("unit", key, resources_pb2.Unit(id=key), status="AVAILABLE",
                    category="ambulance", lat=lat, lon=lon) for key, lat, lon in units]
    rows.append(ViewRow("unit", "busy", resources_pb2.Unit(id="busy"), status="ASSIGNED",
                        category="ambulance", lat=31.25, lon=121.5))
    rows.append(ViewRow("unit", "engine", resources_pb2.Unit(id="engine"),
                        status="AVAILABLE", category="fire_engine", lat=31.25, lon=121.5))
    await views.save(rows, 1)
    try:
        for _ in range(20):
            here = common_pb2.GeoPoint(lat=31.0 + rng.random() * 0.5,
                                       lon=121.2 + rng.random() * 0.6)
            few = await views.nearest("unit", "ambulance", "AVAILABLE", here.lat, here.lon, 10)
            truth = sorted(units, key=lambda u: distance_km(here, u[1], u[2]))[:10]
            assert [key for key, _, _ in few] == [key for key, _, _ in truth]
        everything = await views.nearest("unit", "ambulance", "AVAILABLE", 31.25, 121.5, None)
        assert len(everything) == 2000  # neither the busy one nor another kind
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE public.view, public.view_position")
        await pool.close()
