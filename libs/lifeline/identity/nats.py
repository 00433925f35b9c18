"""Who may publish and consume what on NATS: one user per service, permitted to publish only
its own events and to consume only the streams it listens to.

The topology below is the one place that says which service listens to which; the runtime
refuses a consumer it does not list, so the permissions and the code cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

#: service -> the services whose streams it consumes (DESIGN.md, "Shape").
LISTENS_TO: dict[str, tuple[str, ...]] = {
    # Monitor follows its own warnings too: coupled risks make compound warnings of them.
    "monitor": ("dispatch", "monitor"),
    "dispatch": ("monitor", "resources"),
    # Resources follows warnings too: a flooded underpass closes its road segment.
    "resources": ("dispatch", "monitor"),
    "review": ("dispatch",),
}
#: A read-only user for operators' tools, tests and benchmarks: watches events, reads
#: streams, publishes nothing.
OBSERVER = "observer"
#: An operator's user on a development stack: may manage every stream (and so delete one,
#: as an operator's mistake would; the tests do).
STREAM_ADMIN = "stream-admin"


def stream_name(service: str) -> str:
    return f"LIFELINE_{service.upper()}"


def consumer_name(service: str, upstream: str) -> str:
    return f"{service}-from-{upstream}"


def inbox_prefix(user: str) -> str:
    """Replies to a user's requests arrive under a prefix only that user may subscribe to."""
    return f"_INBOX_{user}"


def service_permissions(service: str) -> dict[str, Any]:
    own = stream_name(service)
    publish = [f"lifeline.{service}.>", "$JS.API.INFO", f"$JS.API.STREAM.INFO.{own}",
               f"$JS.API.STREAM.CREATE.{own}", f"$JS.API.STREAM.UPDATE.{own}",
               # The relay reads what each consumer of its stream says it took.
               f"$JS.API.CONSUMER.LIST.{own}"]
    for upstream in LISTENS_TO[service]:
        stream, consumer = stream_name(upstream), consumer_name(service, upstream)
        publish += [f"$JS.API.STREAM.INFO.{stream}",
                    f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}",
                    f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.>",
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
                    f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
                    # A replacement recreates its durable at the ack floor (bus.Inbox).
                    f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}",
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    f"$JS.ACK.{stream}.{consumer}.>"]
    return {"publish": {"allow": publish},
            "subscribe": {"allow": [f"{inbox_prefix(service)}.>"]}}


def stream_admin_permissions() -> dict[str, Any]:
    return {"publish": {"allow": ["$JS.API.>"]},
            "subscribe": {"allow": [f"{inbox_prefix(STREAM_ADMIN)}.>"]}}


def observer_permissions() -> dict[str, Any]:
    return {"publish": {"allow": ["$JS.API.INFO", "$JS.API.STREAM.INFO.*",
                                  "$JS.API.STREAM.MSG.GET.*", "$JS.API.CONSUMER.INFO.*.*"]},
            "subscribe": {"allow": ["lifeline.>", f"{inbox_prefix(OBSERVER)}.>"]}}


#: Monitor publishes each party's notifications on a subject of its own (the party with
#: '.' written '~', one subject token): lifeline.monitor.notification.<party>.<event>.
NOTIFICATIONS = "lifeline.monitor.notification"


def party_user(party: str) -> str:
    return f"party-{party.replace('.', '~')}"


def party_permissions(party: str) -> dict[str, Any]:
    """A notified party (an SMS gateway, an app, a dashboard acting for it): its own
    notifications and nothing else, live or from the stream through a durable consumer of
    its own filtered to them."""
    own = f"{NOTIFICATIONS}.{party.replace('.', '~')}.>"
    stream, user = stream_name("monitor"), party_user(party)
    consumer = f"notify-{user}"
    return {"publish": {"allow": [
                "$JS.API.INFO", f"$JS.API.STREAM.INFO.{stream}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{own}",
                f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                f"$JS.ACK.{stream}.{consumer}.>"]},
            "subscribe": {"allow": [own, f"{inbox_prefix(user)}.>"]}}


def server_config(*, passwords: dict[str, str], tls_cert: str = "", tls_key: str = "",
                  parties: dict[str, str] | None = None) -> str:
    """A nats-server configuration (its JSON-compatible syntax): a user per service plus
    the observer, a user per notified party given (party -> password), and TLS when a
    certificate is given. JetStream is set on the command line."""
    special = {OBSERVER: observer_permissions, STREAM_ADMIN: stream_admin_permissions}
    users = [{"user": name, "password": password,
              "permissions": special[name]() if name in special
              else service_permissions(name)}
             for name, password in passwords.items()]
    users += [{"user": party_user(party), "password": password,
               "permissions": party_permissions(party)}
              for party, password in (parties or {}).items()]
    config: dict[str, Any] = {"authorization": {"users": users}}
    if tls_cert:
        config["tls"] = {"cert_file": tls_cert, "key_file": tls_key}
    return json.dumps(config, indent=2)
