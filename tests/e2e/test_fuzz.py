"""Hostile input against the running services: requests generated from the message
descriptors (fixed seed, at least 200 per RPC of the four services), raw garbage bytes, a
1 MiB value or a NUL in every string field of every write, the first and last instants
protobuf allows (and one beyond) in every timestamp field of every RPC, and documents nested
a thousand deep. Nothing answers INTERNAL or UNKNOWN, nothing stalls, no process restarts,
and a refused request writes nothing."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import nats
import psycopg
import pytest
from google.protobuf import symbol_database
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import to_timestamp
from lifeline.identity.nats import LISTENS_TO, consumer_name, stream_name
from lifeline.identity.roles import RoleMatrix
from lifeline.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from lifeline.resources.v1 import resources_pb2, resources_pb2_grpc
from lifeline.review.v1 import review_pb2, review_pb2_grpc
from lifeline.scenario import wait_until
from lifeline_monitor.channels.endpoint import MAX_BODY
from lifeline_monitor.channels.links import Links
from nats.js.errors import NotFoundError
from standardwebhooks.webhooks import Webhook

from tests.conftest import Databases
from tests.e2e.test_identity import SERVICE_OF
from tests.unit.test_monitor_cap_intake import HOSTILE
from tests.unit.test_roles import SERVICES

pytestmark = pytest.mark.e2e
PER_RPC = 200
TIMEOUT = 10.0
BROKEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
          grpc.StatusCode.DEADLINE_EXCEEDED)
READS = ("Get", "List", "Replay", "Evaluate")
METHODS = [(s, m) for s in SERVICES for m in s.methods]
WRITES = [(s, m) for s, m in METHODS if not m.name.startswith(READS)]
MIB = 1 << 20
#: How long a generated request listens to a server stream before leaving.
FOLLOW_SECONDS = 0.2
#: How many generated follows listen at once.
FOLLOWERS = 10
#: CAP alerts in the style of the specification's appendix, and each also with a value
#: the schema refuses; documents with a DOCTYPE (entities internal and external, billion
#: laughs) and nested past the bound.
CAP_DOCUMENTS = [variant for path in sorted(
    (Path(__file__).resolve().parents[1] / "data" / "cap").glob("*.xml"))
    for document in [path.read_bytes()]
    for variant in (document, document.replace(b"<status>Actual<", b"<status>Real<"),
                    document.replace(b"<scope>Public<", b"<scope>Everyone<"))] + [
    *HOSTILE.values(), b"<alert>" + b"<a>" * 300 + b"</a>" * 300 + b"</alert>"]


#: The fuzz stack's acknowledgement-link key and SMS gateway secret (so the test can sign
#: links and replies, valid or not, the way monitor and the gateway do).
LINK_KEY = "the fuzz stack signs acknowledgement links with this"
INBOUND = "whsec_" + base64.b64encode(b"the fuzz gateway signs replies").decode()
FZ_NUMBER = "+8613800000009"
#: google.protobuf.Timestamp's first and last instants, then one step beyond each.
EDGE_TIMES = [(-62135596800, 0), (253402300799, 999_999_999), (-62135596801, 0),
              (253402300800, 0)]
#: Plan files of 2 KB nested a thousand deep: arrays, inline tables, dotted keys, a header.
DEEP_TOML = [b"a = " + b"[" * 1000 + b"]" * 1000,
             b"a = " + b"{b = " * 1000 + b"1" + b"}" * 1000,
             b"a" + b".a" * 1000 + b" = 1",
             b"[" + b"a." * 1000 + b"a]\n"]


@pytest.fixture(scope="module")
def stack(databases: Databases) -> Iterator[Stack]:
    """A stack as `lifeline up` runs it, with delivery channels configured: an SMS gateway
    (nothing listens where it points: deliveries fail and are recorded) and its inbound
    webhook, so the acknowledgement endpoint's every door is open to the fuzzer."""
    state = Path(tempfile.mkdtemp(prefix="lifeline-fuzz-"))
    (state / "channels.toml").write_text(f"""
[retry]
tries = 1
timeout = 1
[ack]
secret = "{LINK_KEY}"
[gateway]
sms_url = "http://127.0.0.1:9/messages"
sms = {{ To = "$to", Body = "$text" }}
inbound_secret = "{INBOUND}"
[[parties]]
id = "fz-officer"
channels = [{{ kind = "sms", to = "{FZ_NUMBER}" }}]
""")
    started = Stack(state, nats_url=os.environ.get("NATS_URL") or None,
                    database_url=databases.create(),
                    extra_env={"LIFELINE_CHANNELS": str(state / "channels.toml")})
    try:
        yield started.start()
    finally:
        started.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    """One caller holding every role (department: fire), so the door lets everything in
    and the input itself is what is tested."""
    token = stack.token("fuzzer", *RoleMatrix.load().roles, department="fire")
    opened = {name: stack.channel(name, token) for name in Stack.SERVICES}
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture(scope="module")
def known(channels: dict[str, grpc.Channel]) -> dict[str, list[str]]:
    """A few real things, so that some generated requests reach real aggregates."""
    monitor = monitor_pb2_grpc.MonitorServiceStub(channels["monitor"])
    resources = resources_pb2_grpc.ResourcesServiceStub(channels["resources"])
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"])
    where = common_pb2.GeoPoint(lat=31.2, lon=121.4)
    monitor.RegisterSensor(monitor_pb2.RegisterSensorRequest(
        id="fz-sensor", kind="rainfall", hazard="urban_flooding", unit_of_measure="mm/h",
        location=where, thresholds=monitor_pb2.Thresholds(blue=1, yellow=2, orange=3, red=4),
        direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE), timeout=TIMEOUT)
    resources.RegisterUnit(resources_pb2.RegisterUnitRequest(
        id="fz-unit", kind="ambulance", department="fire", home=where), timeout=TIMEOUT)
    incident = dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=where), timeout=TIMEOUT).incident
    return {"id": ["fz-sensor", "fz-unit", incident.id, "O-1", "T-1"],
            "hazard": ["urban_flooding", "gas_leak"], "kind": ["rainfall", "ambulance"],
            "plan": ["urban_flooding", "gas_leak"]}


class Generator:
    """Random messages of any type, built from its descriptor, leaning on the values that
    break services: empty, huge, NUL and control characters, out-of-range numbers and
    times, unknown enum values."""

    def __init__(self, seed: int, known: dict[str, list[str]]) -> None:
        self.random, self.known = random.Random(seed), known
        self.database = symbol_database.Default()

    def message(self, descriptor: Descriptor, depth: int = 0) -> Message:
        message = self.database.GetSymbol(descriptor.full_name)()
        for field in descriptor.fields:
            if self.random.random() < 0.35:
                continue  # leave it unset
            if field.is_repeated:
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    continue
                for _ in range(self.random.choice([0, 1, 2, 3])):
                    self._append(message, field, depth)
            else:
                self._set(message, field, depth)
        return message

    def _append(self, message: Message, field: FieldDescriptor, depth: int) -> None:
        target = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 3:
                target.add().CopyFrom(self.message(field.message_type, depth + 1))
        else:
            target.append(self.scalar(field))

    def _set(self, message: Message, field: FieldDescriptor, depth: int) -> None:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                getattr(message, field.name).CopyFrom(self.timestamp())
            elif depth < 3:
                getattr(message, field.name).CopyFrom(
                    self.message(field.message_type, depth + 1))
        else:
            setattr(message, field.name, self.scalar(field))

    def timestamp(self) -> Message:
        ts = self.database.GetSymbol("google.protobuf.Timestamp")()
        now = int(time.time())
        if self.random.random() < 0.3:
            ts.seconds, ts.nanos = self.random.choice(EDGE_TIMES)
            return ts
        ts.seconds = self.random.choice([0, -1, now, now - 7200, now + 10**6, 253402300800,
                                         -62135596801, 10**12, -10**12])
        ts.nanos = self.random.choice([0, 5, -1, 10**9, 999_999_999, -(2**31)])
        return ts

    def scalar(self, field: FieldDescriptor) -> Any:
        r, kind = self.random, field.type
        if kind == FieldDescriptor.TYPE_STRING:
            pool = self.known.get(field.name.removesuffix("_id").removesuffix("s"),
                                  self.known["id"])
            return r.choice([
                "", "x", r.choice(pool), r.choice(pool), "a" * 129, "a" * 5000, "\x00",
                f"fz\x00{r.randint(0, 9)}", "line\u2028sep", "🚒 火警", "-1", "9" * 40,
                "../../etc/passwd", "%s%n%x", "' OR 1=1 --", "\t\r\n", "\x1b[31m",
                "a" * MIB if r.random() < 0.02 else "b" * 300,
                "".join(r.choice("abcXYZ019_-:.") for _ in range(r.randint(1, 20)))])
        if kind == FieldDescriptor.TYPE_BOOL:
            return r.random() < 0.5
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return r.choice([0.0, -1.0, 1e9, -1e9, float("nan"), float("inf"),
                             float("-inf"), 1e38, 5e-324, r.uniform(-500, 500)])
        if kind == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            return r.choice([*(v.number for v in field.enum_type.values), 99, -5])
        if kind == FieldDescriptor.TYPE_BYTES:
            if field.name == "xml" and r.random() < 0.5:  # well-formed, valid or not
                return r.choice(CAP_DOCUMENTS)
            if field.name == "plan_toml" and r.random() < 0.5:
                return r.choice(DEEP_TOML)
            return r.randbytes(r.choice([0, 10, 1000]))
        unsigned = kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64,
                            FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64)
        bits = 64 if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
                              FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64,
                              FieldDescriptor.TYPE_SFIXED64) else 32
        low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return r.choice([low, high, 0, 1, min(high, 10**6), max(low, -1),
                         r.randint(max(low, -1000), min(high, 1000))])

    def garbage(self) -> bytes:
        r = self.random
        return r.choice([
            r.randbytes(r.randint(1, 64)),
            b"\x0a\x02\xff\xfe",  # field 1, length 2, invalid UTF-8
            b"\x0a\x80\x80\x80\x80\x10",  # a length far past the end
            b"\xff" * 20])


def call(channel: grpc.Channel, service: str, method: MethodDescriptor,
         request: Message | bytes) -> grpc.StatusCode:
    path = f"/{service}/{method.name}"
    raw = isinstance(request, bytes)
    serialize = (lambda b: b) if raw else type(request).SerializeToString
    kwargs: dict[str, Any] = {"request_serializer": serialize,
                              "response_deserializer": lambda b: b}
    metadata = [("idempotency-key", str(uuid.uuid4()))]
    try:
        if method.client_streaming:
            channel.stream_unary(path, **kwargs)(iter([request, request]), timeout=TIMEOUT,
                                                 metadata=metadata)
        elif method.server_streaming:
            # A follow streams until its caller leaves: listen a moment, then leave.
            stream = channel.unary_stream(path, **kwargs)(request, timeout=TIMEOUT,
                                                          metadata=metadata)
            leave = threading.Timer(FOLLOW_SECONDS, stream.cancel)
            leave.start()
            try:
                list(stream)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    raise
            finally:
                leave.cancel()
        else:
            channel.unary_unary(path, **kwargs)(request, timeout=TIMEOUT, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


class Ledger:
    """How many events every service has stored: a refused request must not move it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.conn = psycopg.connect(stack.database_url or "", autocommit=True)
        self.query = " + ".join(
            f"(SELECT count(*) FROM {name}.{name}_events)" for name in Stack.SERVICES)
        self.unrelayed = " + ".join(
            f"(SELECT count(*) FROM {name}.{name}_events WHERE notification_id > (SELECT "
            f"coalesce(max(notification_id), 0) FROM {name}.{name}_tracking "
            "WHERE application_name = 'outbox'))" for name in Stack.SERVICES)
        self.runner = asyncio.Runner()
        self.nats: nats.NATS | None = None

    def close(self) -> None:
        if self.nats is not None:
            self.runner.run(self.nats.close())
        self.runner.close()
        self.conn.close()

    def count(self) -> int:
        return self._one(f"SELECT {self.query}")

    def _one(self, query: str) -> int:
        row = self.conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    def quiet(self) -> int:
        """The count once the services' reactions to earlier writes are over, by what each
        says of itself: every event stored is relayed (the relay's saved position), every
        message on the streams is taken (no consumer has any pending or unacknowledged),
        and no event was stored meanwhile."""

        waiting = ["nothing yet"]

        def settled() -> list[int] | None:  # a list: a count of 0 is settled too
            count = self.count()
            if unrelayed := self._one(f"SELECT {self.unrelayed}"):
                waiting[0] = f"{unrelayed} events not relayed"
                return None
            if busy := self.runner.run(self._busy()):
                waiting[0] = busy
                return None
            return [count] if self.count() == count else None

        # Bounded above the inbox's wait for an early message's missing versions (30 s),
        # after which it is parked and the consumer is idle again.
        try:
            return wait_until(settled, "the services to finish reacting to a write", 120)[0]
        except TimeoutError as error:
            raise TimeoutError(f"{error}; last seen: {waiting[0]}") from None

    async def _busy(self) -> str | None:
        """The first consumer still at work (or not made yet), or None."""
        if self.nats is None:
            self.nats = await bus.connect(self.stack.nats_url or "", "fuzz ledger",
                                          **self.stack.nats_login())
        js = self.nats.jetstream()
        for service, upstreams in LISTENS_TO.items():
            for upstream in upstreams:
                try:
                    info = await js.consumer_info(stream_name(upstream),
                                                  consumer_name(service, upstream))
                except NotFoundError:  # not made yet, or being made again on a takeover
                    return f"no consumer {service} on {upstream} yet"
                if info.num_pending or info.num_ack_pending:
                    return (f"{service} on {upstream}: {info.num_pending} pending, "
                            f"{info.num_ack_pending} unacknowledged")
        return None


@pytest.fixture(scope="module")
def ledger(stack: Stack) -> Iterator[Ledger]:
    kept = Ledger(stack)
    yield kept
    kept.close()


@pytest.mark.parametrize(("service", "method"), METHODS,
                         ids=[f"{s.name}.{m.name}" for s, m in METHODS])
def test_generated_requests_never_break_a_service(
        stack: Stack, channels: dict[str, grpc.Channel], known: dict[str, list[str]],
        ledger: Ledger, service: Descriptor, method: MethodDescriptor) -> None:
    name = SERVICE_OF[service.full_name]
    generate = Generator(zlib.crc32(method.full_name.encode()), known)  # fixed seeds
    pids = {n: stack.service(n).pid for n in Stack.SERVICES}
    before = ledger.quiet()
    codes: dict[grpc.StatusCode, int] = {}
    requests: list[Message | bytes] = [generate.garbage() if index % 10 == 9
                                       else generate.message(method.input_type)
                                       for index in range(PER_RPC)]
    if method.server_streaming:
        # Watches write nothing, and each listens a while: many at once.
        with ThreadPoolExecutor(FOLLOWERS) as followers:
            answers = list(followers.map(
                lambda request: call(channels[name], service.full_name, method, request),
                requests))
        for request, code in zip(requests, answers, strict=True):
            assert code not in BROKEN, (method.full_name, code, request)
        assert ledger.count() == before, f"{method.name} wrote events"
        requests = []
    for request in requests:
        code = call(channels[name], service.full_name, method, request)
        codes[code] = codes.get(code, 0) + 1
        assert code not in BROKEN, (method.full_name, code, request)
        after = ledger.count()
        if code != grpc.StatusCode.OK:
            assert after == before, f"{method.name} refused ({code}) yet wrote events"
        elif after != before:
            before = ledger.quiet()
    assert {n: stack.service(n).pid for n in Stack.SERVICES} == pids
    assert all(stack.service(n).proc.poll() is None for n in Stack.SERVICES)  # type: ignore[union-attr]
    assert sum(codes.values()) == len(requests)


def test_generated_requests_at_once_never_break_a_service(
        stack: Stack, channels: dict[str, grpc.Channel], known: dict[str, list[str]]) -> None:
    """The same hostile requests, every RPC's mixed together from several callers at once,
    while a flapping sensor raises and clears warnings (their CAP alerts are built and
    checked in worker threads): a refusal must not depend on what another thread is
    doing (an lxml validator shared by threads once turned a refused CAP import into
    INTERNAL)."""
    calls: list[tuple[str, str, MethodDescriptor, Message | bytes]] = []
    for service, method in METHODS:
        generate = Generator(zlib.crc32(method.full_name.encode()) + 1, known)
        calls += [(SERVICE_OF[service.full_name], service.full_name, method,
                   generate.garbage() if index % 10 == 9
                   else generate.message(method.input_type)) for index in range(PER_RPC // 8)]
    random.Random(7).shuffle(calls)
    pids = {n: stack.service(n).pid for n in Stack.SERVICES}
    monitor = monitor_pb2_grpc.MonitorServiceStub(channels["monitor"])
    done = threading.Event()
    flaps: list[int] = []

    def flap() -> None:
        while not done.is_set():
            value = 10.0 if len(flaps) % 2 == 0 else 0.0
            monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(readings=[
                monitor_pb2.Reading(sensor_id="fz-sensor", value=value,
                                    measured_at=to_timestamp(datetime.now(UTC)))]),
                timeout=TIMEOUT)
            flaps.append(1)

    def take(share: list[tuple[str, str, MethodDescriptor, Message | bytes]]
             ) -> list[tuple[str, grpc.StatusCode]]:
        return [(method.full_name, call(channels[name], service, method, request))
                for name, service, method, request in share]

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        with ThreadPoolExecutor(4) as callers:
            answered = [pair for share in callers.map(take, [calls[n::4] for n in range(4)])
                        for pair in share]
    finally:
        done.set()
        flapper.join(timeout=TIMEOUT)
    assert len(answered) == len(calls)
    assert [(name, code) for name, code in answered if code in BROKEN] == []
    assert len(flaps) > 1  # warnings were raised and cleared meanwhile
    assert {n: stack.service(n).pid for n in Stack.SERVICES} == pids


def string_paths(descriptor: Descriptor, prefix: str = "", depth: int = 0
                 ) -> Iterator[tuple[str, list[str]]]:
    """(path for people, path of attribute names) of every string field, nested too."""
    for field in descriptor.fields:
        if field.is_repeated:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            yield f"{prefix}{field.name}", [field.name]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 2 and \
                field.message_type.full_name.startswith("lifeline."):
            for path, names in string_paths(field.message_type, f"{prefix}{field.name}.",
                                            depth + 1):
                yield path, [field.name, *names]


WRITE_FIELDS = [(s, m, path, names) for s, m in WRITES if not m.client_streaming
                for path, names in string_paths(m.input_type)]


@pytest.mark.parametrize("bad", ["1 MiB", "NUL"])
def test_a_huge_or_nul_value_in_any_write_is_refused_naming_the_field(
        stack: Stack, channels: dict[str, grpc.Channel], bad: str) -> None:
    value = "x" * MIB if bad == "1 MiB" else "before\x00after"
    database = symbol_database.Default()
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"])
    assert len(WRITE_FIELDS) >= 60
    for service, method, path, names in WRITE_FIELDS:
        request = database.GetSymbol(method.input_type.full_name)()
        target = request
        for name in names[:-1]:
            target = getattr(target, name)
        setattr(target, names[-1], value)
        name = SERVICE_OF[service.full_name]
        stub = channels[name].unary_unary(f"/{service.full_name}/{method.name}",
                                          request_serializer=type(request).SerializeToString,
                                          response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as caught:
            stub(request, timeout=TIMEOUT)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, path,
                                                                 error.details())
        assert (error.details() or "").startswith(path), (method.name, error.details())
        assert len(error.details() or "") < 300  # the bad value is not echoed back
        # The next valid write goes through: nothing is left holding the store. How soon
        # (issue 7: within a second) is bench/responsiveness.py's; a hang fails here.
        dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
            hazard="gas_leak", location=common_pb2.GeoPoint(lat=31.2, lon=121.4),
            action=dispatch_pb2.Action(occurred_at=to_timestamp(datetime.now(UTC)))),
            timeout=TIMEOUT)


def endpoint_of(stack: Stack) -> str:
    """Where monitor's acknowledgement endpoint listens (it says so in its log)."""
    log = stack.state_dir / "logs" / "monitor.log"
    return wait_until(lambda: next(iter(re.findall(r"acknowledgement endpoint on (\S+)",
                                                   log.read_text())), None),
                      "monitor's acknowledgement endpoint", TIMEOUT)


def test_hostile_http_to_the_acknowledgement_endpoint_never_breaks_it_nor_writes(
        stack: Stack, channels: dict[str, grpc.Channel], ledger: Ledger) -> None:
    """Forged and replayed links, links for someone not notified, oversized and garbage
    bodies, forged and hostile gateway replies: each a 4xx, none writes an event."""
    monitor = monitor_pb2_grpc.MonitorServiceStub(channels["monitor"])
    where = common_pb2.GeoPoint(lat=31.25, lon=121.35)
    monitor.LoadGrid(monitor_pb2.LoadGridRequest(
        districts=[monitor_pb2.District(id="fz-district", duty_officer="fz-duty")],
        cells=[monitor_pb2.GridCell(location=where, district="fz-district",
                                    grid_officer="fz-officer")]), timeout=TIMEOUT)
    monitor.RegisterSensor(monitor_pb2.RegisterSensorRequest(
        id="fz-http", kind="rainfall", hazard="urban_flooding", unit_of_measure="mm/h",
        location=where, thresholds=monitor_pb2.Thresholds(blue=1, yellow=2, orange=3, red=4),
        direction=monitor_pb2.DIRECTION_HIGHER_IS_WORSE), timeout=TIMEOUT)
    warning = monitor.IngestReadingBatch(monitor_pb2.IngestReadingBatchRequest(readings=[
        monitor_pb2.Reading(sensor_id="fz-http", value=9,
                            measured_at=to_timestamp(datetime.now(UTC)))]),
        timeout=TIMEOUT).warnings[0]
    red = common_pb2.WARNING_LEVEL_RED
    links = Links(LINK_KEY, 60)
    base = endpoint_of(stack)
    wait_until(lambda: monitor.ListInbox(monitor_pb2.ListInboxRequest(party="fz-officer"),
                                         timeout=TIMEOUT).notifications, "the notification",
               TIMEOUT)
    valid = f"{base}/ack/{links.token(warning.id, 'fz-officer', red, 'sms')}"
    with httpx.Client(timeout=TIMEOUT) as web:
        ledger.quiet()
        assert web.post(valid).status_code == 200  # the one write: then replays
        before = ledger.quiet()
        generate = random.Random(24)
        forged_key = "a key that is not monitor's, yet long enough"
        now = datetime.now(UTC)

        def reply(body: bytes, secret: str = INBOUND, age: int = 0) -> dict[str, str]:
            stamp = datetime.fromtimestamp(now.timestamp() - age, UTC)
            return {"webhook-id": "fz", "webhook-timestamp": str(int(stamp.timestamp())),
                    "webhook-signature": Webhook(secret).sign("fz", stamp, body)}

        code = links.code(warning.id, "fz-officer")
        forged = Links(forged_key, 60).token(warning.id, "fz-officer", red, "email")
        odd = jwt.encode({"w": 1, "p": [], "l": "x", "jti": 2, "aud": "lifeline-monitor-ack",
                          "exp": 10**12}, LINK_KEY, "HS256")  # signed, but nonsense inside
        form = f"From=%2B{FZ_NUMBER[1:]}&Body=ACK+{code}".encode()
        requests: list[tuple[str, str, bytes | list[bytes], dict[str, str]]] = [
            ("POST", valid, b"", {}),  # replayed
            ("POST", valid, b"", {}),
            ("GET", valid, b"", {}),
            ("POST", f"{base}/ack/{links.token(warning.id, 'not-notified', red, 'sms')}",
             b"", {}),
            ("POST", f"{base}/ack/{forged}", b"", {}),
            ("POST", f"{base}/ack/{jwt.encode({'w': warning.id}, LINK_KEY, 'HS256')}", b"", {}),
            ("POST", f"{base}/ack/{odd}", b"", {}),
            ("POST", valid, b"x" * (MAX_BODY + 1), {}),
            ("POST", valid, [b"x" * MAX_BODY] * 4, {}),  # chunked, no length declared
            ("POST", f"{base}/sms/inbound", form, reply(form, "whsec_" + base64.b64encode(
                b"forged").decode())),
            ("POST", f"{base}/sms/inbound", form, reply(form, age=3600)),  # replayed late
            ("POST", f"{base}/sms/inbound", form, {}),
            ("POST", f"{base}/sms/inbound", b"x" * (MAX_BODY + 1), reply(b"x")),
            ("POST", f"{base}/sms/inbound", b"\xff\xfe{", reply(b"\xff\xfe{")),
            ("POST", f"{base}/sms/inbound", b'{"from": [1], "text": {}}',
             {**reply(b'{"from": [1], "text": {}}'), "content-type": "application/json"}),
            ("POST", f"{base}/sms/inbound", form, {**reply(form), "webhook-id": "other"}),
            ("POST", f"{base}/sms/inbound", form, reply(form)),  # already acknowledged
        ]
        for _ in range(100):
            junk = generate.randbytes(generate.choice([0, 10, 300, 3000]))
            path = generate.choice(["/ack/", "/ack/a.b.c", "/sms/inbound", "/ack/" + "%" * 50,
                                    "/ack/" + base64.urlsafe_b64encode(junk[:60]).decode()])
            requests.append((generate.choice(["GET", "POST", "PUT", "DELETE"]), base + path,
                             junk, generate.choice([{}, {"content-type": "application/json"},
                                                    reply(junk)])))
        answers = []
        for method, url, body, headers in requests:
            answer = web.request(method, url, headers=headers,
                                 content=iter(body) if isinstance(body, list) else body)
            answers.append((method, url[len(base):][:40], answer.status_code))
            assert answer.status_code < 500, (method, url, answer.text[:200])
    assert [code for _, _, code in answers[:3]] == [409, 409, 200]  # replays; a GET shows
    assert [a for a in answers if a[2] < 400] == [answers[2]]  # nothing else got through
    assert ledger.count() == before, "a refused acknowledgement or reply wrote events"


def timestamp_paths(descriptor: Descriptor, depth: int = 0) -> Iterator[list[FieldDescriptor]]:
    """The fields leading to every google.protobuf.Timestamp of a message, nested and in
    repeated fields too."""
    for field in descriptor.fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type.GetOptions().map_entry:
            continue
        if field.message_type.full_name == "google.protobuf.Timestamp":
            yield [field]
        elif depth < 4 and field.message_type.full_name.startswith("lifeline."):
            for path in timestamp_paths(field.message_type, depth + 1):
                yield [field, *path]


def with_time(request: Message, path: list[FieldDescriptor], seconds: int, nanos: int
              ) -> Message:
    """A copy of request with the timestamp at path set (a repeated field gains an item)."""
    changed = type(request)()
    changed.CopyFrom(request)
    target: Any = changed
    for field in path:
        target = getattr(target, field.name)
        if field.is_repeated:
            target = target.add()
    target.seconds, target.nanos = seconds, nanos
    return changed


TIMED = [(s, m, paths) for s, m in METHODS
         for paths in [list(timestamp_paths(m.input_type))] if paths]


@pytest.mark.parametrize(("service", "method", "paths"), TIMED,
                         ids=[f"{s.name}.{m.name}" for s, m, _ in TIMED])
def test_range_edge_times_in_every_timestamp_field_never_break_a_service(
        stack: Stack, channels: dict[str, grpc.Channel], known: dict[str, list[str]],
        service: Descriptor, method: MethodDescriptor,
        paths: list[list[FieldDescriptor]], ledger: Ledger) -> None:
    """Every timestamp field of the request at each edge, alone and in generated requests
    around it: accepted or refused INVALID_ARGUMENT, never INTERNAL (an as_of of
    9999-12-31T23:59:59.999999999Z once overflowed a datetime)."""
    name = SERVICE_OF[service.full_name]
    generate = Generator(zlib.crc32(method.full_name.encode()) + 2, known)
    before = ledger.quiet()
    asked = 0
    for path in paths:
        bases = [generate.message(method.input_type) for _ in range(3)]
        for base in [type(bases[0])(), *bases]:
            for seconds, nanos in EDGE_TIMES:
                request = with_time(base, path, seconds, nanos)
                code = call(channels[name], service.full_name, method, request)
                asked += 1
                where = ".".join(f.name for f in path)
                assert code not in BROKEN, (method.full_name, where, code, request)
                after = ledger.count()
                if code != grpc.StatusCode.OK:
                    assert after == before, f"{method.name} refused ({code}) yet wrote events"
                elif after != before:
                    before = ledger.quiet()
    assert asked == len(paths) * 4 * len(EDGE_TIMES)


@pytest.mark.parametrize("rpc", ["GetCityAsOf", "GetIncidentAsOf"])
def test_the_city_as_of_the_end_of_time_is_refused_naming_the_field(
        channels: dict[str, grpc.Channel], known: dict[str, list[str]], rpc: str) -> None:
    review = review_pb2_grpc.ReviewServiceStub(channels["review"])
    request_type = getattr(review_pb2, f"{rpc}Request")
    last = request_type(as_of=Timestamp(seconds=253402300799, nanos=999_999_999))
    with pytest.raises(grpc.RpcError) as caught:
        getattr(review, rpc)(last, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("as_of: outside the time range"), \
        caught.value.details()
    # The last instant accepted answers.
    if rpc == "GetCityAsOf":
        accepted = review.GetCityAsOf(review_pb2.GetCityAsOfRequest(
            as_of=Timestamp(seconds=253370764799, nanos=999_999_999)), timeout=TIMEOUT)
        assert isinstance(accepted, review_pb2.GetCityAsOfResponse)


@pytest.mark.parametrize("document", DEEP_TOML, ids=["arrays", "inline tables",
                                                     "dotted keys", "table header"])
def test_a_plan_nested_a_thousand_deep_is_refused_and_writes_nothing(
        stack: Stack, channels: dict[str, grpc.Channel], document: bytes,
        ledger: Ledger) -> None:
    review = review_pb2_grpc.ReviewServiceStub(channels["review"])
    before = ledger.quiet()
    with pytest.raises(grpc.RpcError) as caught:
        review.ProposePlanRevision(review_pb2.ProposePlanRevisionRequest(
            plan_id="urban_flooding", plan_toml=document, reason="deeper"), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nested deeper than 32 levels" in (caught.value.details() or "")
    assert ledger.count() == before


def test_nothing_the_fuzzer_sent_left_an_error_in_a_services_log(stack: Stack) -> None:
    """Last in the module: every refusal above was an answer, not a fault an operator would
    find in the logs (an unretrieved failure, a traceback from a watch its caller dropped)."""
    errors = {name: [line for line in stack.service(name).log_path.read_text(
                  errors="replace").splitlines() if f" {name} ERROR " in line]
              for name in Stack.SERVICES}
    assert not any(errors.values()), {n: lines[:3] for n, lines in errors.items() if lines}
