"""NATS connections and JetStream streams, and what streams and durables say of themselves.

One stream per service; it says which of its service's outbox it holds, and each
consumer's durable says how far it took it."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from lifeline.identity.nats import inbox_prefix, stream_name

log = logging.getLogger(__name__)

#: JetStream's memory of Nats-Msg-Ids; consumers do not depend on it (they recognise events
#: by identity), it only saves them work.
DUPLICATE_WINDOW_SECONDS = 120.0
#: Stream metadata: the stream holds every relayed event after this outbox position (0: all
#: of them). A stream rebuilt after a loss starts high and comes down as the relay refills it.
HOLDS_FROM = "lifeline-holds-from"
#: Consumer metadata: the outbox position up to which the consumer took everything, as its
#: store said when it created the durable.
TAKEN = "lifeline-taken"


async def connect(url: str, name: str, *, user: str = "", password: str = "",
                  ca_file: str = "") -> NATS:
    """Connect as one NATS user (each service has its own), over TLS when a CA is given."""

    async def on_error(error: Exception) -> None:
        log.warning("NATS: %s", error)

    options: dict[str, Any] = {}
    if user:
        options.update(user=user, password=password, inbox_prefix=inbox_prefix(user))
    if ca_file:
        options["tls"] = ssl.create_default_context(cafile=ca_file)
    return await nats.connect(servers=[url], name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.25, connect_timeout=2,
                              error_cb=on_error, **options)


async def ensure_stream(js: JetStreamContext, service: str, replicas: int = 1,
                        duplicate_window: float = DUPLICATE_WINDOW_SECONDS,
                        holds_from: int | None = None) -> api.StreamInfo:
    """Create the service's stream, or bring an existing one to this configuration (its
    metadata kept, `holds_from` set when given: only the relay knows it)."""
    config = api.StreamConfig(name=stream_name(service), subjects=[f"lifeline.{service}.>"],
                              storage=api.StorageType.FILE, duplicate_window=duplicate_window,
                              num_replicas=replicas)
    try:
        info = await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        if holds_from is not None:
            config.metadata = {HOLDS_FROM: str(holds_from)}
        return await js.add_stream(config)
    config.metadata = dict(info.config.metadata or {})
    if holds_from is not None:
        config.metadata[HOLDS_FROM] = str(holds_from)
    return await js.update_stream(config)


def holds_from(info: api.StreamInfo) -> int | None:
    """What the stream says it holds (None: a stream that does not say)."""
    text = (info.config.metadata or {}).get(HOLDS_FROM, "")
    return int(text) if text.isdigit() else None


def taken(info: api.ConsumerInfo) -> int | None:
    """What a consumer said it took when it created its durable (None: it did not say)."""
    text = (info.config.metadata or {}).get(TAKEN, "")
    return int(text) if text.isdigit() else None


async def say_holds_from(js: JetStreamContext, info: api.StreamInfo,
                         position: int) -> api.StreamInfo:
    """Record on the stream (as it is configured) which of the outbox it holds."""
    config = info.config
    config.metadata = {**(config.metadata or {}), HOLDS_FROM: str(position)}
    return await js.update_stream(config)
