"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio

from lifeline import bus
from lifeline.devstack import Stack


def publish_undecodable(stack: Stack, incident_id: str, versions: tuple[int, ...] = (1, 2)
                        ) -> None:
    """Messages no consumer can decode, as if dispatch had published events `versions` of
    an incident (as dispatch's own NATS user: only dispatch may publish on its subjects)."""

    async def forge() -> None:
        nc = await bus.connect(stack.nats_url or "", "test", **stack.nats_login("dispatch"))
        try:
            js = nc.jetstream()
            for version in versions:
                await js.publish("lifeline.dispatch.incident.opened", b"\xff\x01not protobuf",
                                 headers={"Nats-Msg-Id": f"{incident_id}/{version}",
                                          bus.TYPE_HEADER: "lifeline.incident.v1.IncidentEvent"})
        finally:
            await nc.close()

    asyncio.run(forge())
