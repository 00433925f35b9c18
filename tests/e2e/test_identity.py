"""Identity against a running stack, as `lifeline up` starts it (TLS, tokens, a NATS user
per service): who may call what, who is recorded as the actor, idempotent retries,
imports kept apart, and NATS refusing forged events."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import symbol_database
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lifeline import bus
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.events import event_of, meta_of, to_timestamp
from lifeline.identity.roles import RoleMatrix
from lifeline.identity.tokens import TokenIssuer
from lifeline.incident.aggregate import incident_id_for_warning
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline.review.v1 import review_pb2, review_pb2_grpc
from lifeline.scenario import wait_until

from tests.unit.test_roles import SERVICES

pytestmark = pytest.mark.e2e
TIMEOUT = 10.0
SERVICE_OF = {"lifeline.monitor.v1.MonitorService": "monitor",
              "lifeline.dispatch.v1.DispatchService": "dispatch",
              "lifeline.resources.v1.ResourcesService": "resources",
              "lifeline.review.v1.ReviewService": "review",
              # Every service serves it; its role checks are the same everywhere.
              "lifeline.common.v1.ParkingService": "dispatch",
              "lifeline.common.v1.OutboxService": "dispatch"}


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


def dispatch_as(stack: Stack, name: str, *roles: str, department: str = ""
                ) -> dispatch_pb2_grpc.DispatchServiceStub:
    token = stack.token(name, *roles, department=department) if roles else ""
    return dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", token))


def review_as(stack: Stack, name: str, *roles: str) -> review_pb2_grpc.ReviewServiceStub:
    return review_pb2_grpc.ReviewServiceStub(stack.channel("review", stack.token(name, *roles)))


def refused(call: Callable[[], Any], code: grpc.StatusCode, *names: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    for name in names:
        assert name in (caught.value.details() or ""), caught.value.details()


def report_request(description: str = "", actor: str = "") -> dispatch_pb2.ReportIncidentRequest:
    return dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=common_pb2.GeoPoint(lat=31.23, lon=121.47),
        description=description or f"smell of gas {uuid.uuid4().hex[:8]}",
        action=dispatch_pb2.Action(actor=actor))


def history(stack: Stack, incident_id: str, events: int) -> list[incident_pb2.IncidentEvent]:
    reader = review_as(stack, "auditor", "viewer")

    def kept() -> list[incident_pb2.IncidentEvent] | None:
        try:
            found = list(reader.GetIncidentHistory(review_pb2.GetIncidentHistoryRequest(
                incident_id=incident_id), timeout=TIMEOUT))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return found if len(found) >= events else None

    return wait_until(kept, f"review to keep {events} events of {incident_id}")


def all_incidents(stack: Stack) -> int:
    reader = dispatch_as(stack, "auditor", "viewer")
    return len(reader.ListIncidents(dispatch_pb2.ListIncidentsRequest(
        page=common_pb2.PageRequest(page_size=1000)), timeout=TIMEOUT).incidents)


# ---- authentication ----


@pytest.mark.parametrize("service", Stack.SERVICES)
def test_a_call_without_a_token_is_unauthenticated(stack: Stack, service: str) -> None:
    name = next(n for n, s in SERVICE_OF.items() if s == service)
    method = next(m for s in SERVICES if s.full_name == name for m in s.methods)
    call = stack.channel(service).unary_unary(f"/{name}/{method.name}")
    refused(lambda: call(b"", timeout=TIMEOUT), grpc.StatusCode.UNAUTHENTICATED, "bearer token")


def test_a_forged_or_expired_token_is_unauthenticated(stack: Stack) -> None:
    forged = TokenIssuer(Ed25519PrivateKey.generate()).issue("chief", ["commander"])
    stub = dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", forged))
    refused(lambda: stub.ListIncidents(dispatch_pb2.ListIncidentsRequest(), timeout=TIMEOUT),
            grpc.StatusCode.UNAUTHENTICATED, "signature")
    assert stack.authority is not None
    expired = TokenIssuer.from_file(stack.authority.signing_key).issue(
        "li", ["viewer"], ttl=-timedelta(hours=1))
    stub = dispatch_pb2_grpc.DispatchServiceStub(stack.channel("dispatch", expired))
    refused(lambda: stub.ListIncidents(dispatch_pb2.ListIncidentsRequest(), timeout=TIMEOUT),
            grpc.StatusCode.UNAUTHENTICATED, "expired")


def test_health_needs_no_token_and_reflection_needs_one(stack: Stack) -> None:
    channel = stack.channel("monitor")
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
    refused(lambda: list(reflection_pb2_grpc.ServerReflectionStub(channel)
                         .ServerReflectionInfo(iter(ask), timeout=TIMEOUT)),
            grpc.StatusCode.UNAUTHENTICATED)
    viewer = stack.channel("monitor", stack.token("li", "viewer"))
    listed = list(reflection_pb2_grpc.ServerReflectionStub(viewer).ServerReflectionInfo(
        iter(ask), timeout=TIMEOUT))
    assert listed[0].list_services_response.service


def test_plaintext_is_not_served(stack: Stack) -> None:
    with grpc.insecure_channel(stack.address("dispatch")) as plain:
        stub = health_pb2_grpc.HealthStub(plain)
        refused(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=2),
                grpc.StatusCode.UNAVAILABLE)


# ---- roles ----


def test_a_viewer_cannot_dismiss(stack: Stack) -> None:
    incident = dispatch_as(stack, "officer-li", "operator").ReportIncident(
        report_request(), timeout=TIMEOUT).incident
    viewer = dispatch_as(stack, "visitor", "viewer")
    refused(lambda: viewer.DismissIncident(dispatch_pb2.IncidentStepRequest(
        incident_id=incident.id), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED, "DismissIncident needs role operator, commander")
    still = viewer.GetIncident(dispatch_pb2.GetIncidentRequest(incident_id=incident.id),
                               timeout=TIMEOUT).incident
    assert (still.state, still.version) == (incident.state, incident.version)


def test_every_rpc_for_every_role_is_allowed_or_refused_as_the_matrix_says(
        stack: Stack) -> None:
    """Each role calls each RPC with an empty request: a role outside the matrix entry is
    PERMISSION_DENIED; a role inside gets past the door (whatever the empty request then
    earns: INVALID_ARGUMENT, NOT_FOUND, or an answer)."""
    matrix = RoleMatrix.load()
    database = symbol_database.Default()
    # Each with a department, as department-bound roles' tokens carry one.
    channels = {(role, service): stack.channel(service, stack.token(
        f"walker-{role}", role, department="fire"))
        for role in matrix.roles for service in Stack.SERVICES}
    checked = 0
    for descriptor in SERVICES:
        service = SERVICE_OF[descriptor.full_name]
        for method in descriptor.methods:
            path = f"/{descriptor.full_name}/{method.name}"
            request = database.GetSymbol(method.input_type.full_name)()
            allowed = set(matrix.allowed_roles(path))
            for role in matrix.roles:
                channel = channels[role, service]
                kwargs = {"request_serializer": type(request).SerializeToString,
                          "response_deserializer": lambda b: b}
                try:
                    if method.client_streaming:
                        channel.stream_unary(path, **kwargs)(iter([]), timeout=TIMEOUT)
                    elif method.server_streaming:
                        # A watch runs until its caller leaves: its first answer will do.
                        stream = channel.unary_stream(path, **kwargs)(request, timeout=TIMEOUT)
                        next(stream, None)
                        stream.cancel()
                    else:
                        channel.unary_unary(path, **kwargs)(request, timeout=TIMEOUT)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as error:
                    code = error.code()
                assert code != grpc.StatusCode.UNAUTHENTICATED, (path, role)
                assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                    path, role)
                if role in allowed:
                    assert code != grpc.StatusCode.PERMISSION_DENIED, (path, role)
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, (path, role, code)
                checked += 1
    # Every RPC of the four services (and the parking service each serves), every role.
    assert checked == sum(len(d.methods) for d in SERVICES) * len(matrix.roles) > 0


def test_a_department_acts_only_on_its_own_orders(stack: Stack) -> None:
    chief = dispatch_as(stack, "chief-zhao", "operator", "commander")
    incident = chief.ReportIncident(report_request(), timeout=TIMEOUT).incident
    chief.DeclareIncident(dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident.id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
        hazard_type="gas_leak", grade=incident_pb2.GRADE_IV), timeout=TIMEOUT)
    order = chief.IssueOrder(dispatch_pb2.IssueOrderRequest(
        incident_id=incident.id, department="fire", tier=incident_pb2.ORDER_TIER_DISTRICT,
        instruction="cordon off 200 m", acknowledge_within_minutes=5,
        complete_within_minutes=30), timeout=TIMEOUT).incident.orders[-1]
    step = dispatch_pb2.OrderStepRequest(incident_id=incident.id, order_id=order.id)
    police = dispatch_as(stack, "police-duty", "department", department="police")
    refused(lambda: police.AcknowledgeOrder(step, timeout=TIMEOUT),
            grpc.StatusCode.PERMISSION_DENIED, "department 'fire'", "'police' only")
    fire = dispatch_as(stack, "fire-duty", "department", department="fire")
    acknowledged = fire.AcknowledgeOrder(step, timeout=TIMEOUT).incident
    assert next(o for o in acknowledged.orders if o.id == order.id).status == \
        incident_pb2.ORDER_STATUS_ACKNOWLEDGED


# ---- the actor is the verified caller ----


def test_the_actor_is_the_tokens_identity_whatever_the_request_says(stack: Stack) -> None:
    officer = dispatch_as(stack, "officer-li", "operator")
    before = all_incidents(stack)
    refused(lambda: officer.ReportIncident(report_request(actor="chief-commander"),
                                           timeout=TIMEOUT),
            grpc.StatusCode.PERMISSION_DENIED, "'officer-li' may act only as itself")
    assert all_incidents(stack) == before  # the refused call wrote nothing
    incident = officer.ReportIncident(report_request(actor="officer-li"),
                                      timeout=TIMEOUT).incident
    officer.DismissIncident(dispatch_pb2.IncidentStepRequest(
        incident_id=incident.id, action=dispatch_pb2.Action(reason="false alarm")),
        timeout=TIMEOUT)
    events = history(stack, incident.id, 2)
    assert [(meta_of(e).actor, meta_of(e).via) for e in events] == [("officer-li", "")] * 2
    assert events[0].reported.reporter == "officer-li"


def test_a_call_taking_system_records_the_operator_it_acts_for(stack: Stack) -> None:
    system = dispatch_as(stack, "cad-119", "call-taker")
    incident = system.ReportIncident(report_request(actor="operator-wu"),
                                     timeout=TIMEOUT).incident
    meta = meta_of(history(stack, incident.id, 1)[0])
    assert (meta.actor, meta.via) == ("operator-wu", "cad-119")


# ---- idempotent retries ----


def test_a_retried_report_creates_one_incident(stack: Stack) -> None:
    officer = dispatch_as(stack, "officer-li", "operator")
    key = [("idempotency-key", str(uuid.uuid4()))]
    request = report_request()
    before = all_incidents(stack)
    first = officer.ReportIncident(request, metadata=key, timeout=TIMEOUT)
    again = officer.ReportIncident(request, metadata=key, timeout=TIMEOUT)
    assert again == first
    assert all_incidents(stack) == before + 1
    refused(lambda: officer.ReportIncident(report_request(), metadata=key, timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "idempotency-key", "different request")
    # Keys are per caller: another caller's same key is a new request of its own.
    other = dispatch_as(stack, "officer-wu", "operator").ReportIncident(
        request, metadata=key, timeout=TIMEOUT)
    assert other.incident.id != first.incident.id


def test_a_retried_declaration_is_recorded_once(stack: Stack) -> None:
    chief = dispatch_as(stack, "chief-zhao", "operator", "commander")
    incident = chief.ReportIncident(report_request(), timeout=TIMEOUT).incident
    declare = dispatch_pb2.DeclareIncidentRequest(
        incident_id=incident.id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
        hazard_type="gas_leak", grade=incident_pb2.GRADE_IV,
        action=dispatch_pb2.Action(occurred_at=to_timestamp(datetime.now(UTC))))
    key = [("idempotency-key", str(uuid.uuid4()))]
    first = chief.DeclareIncident(declare, metadata=key, timeout=TIMEOUT)
    # Without the key the retry is refused: the step already happened.
    refused(lambda: chief.DeclareIncident(declare, timeout=TIMEOUT),
            grpc.StatusCode.FAILED_PRECONDITION)
    again = chief.DeclareIncident(declare, metadata=key, timeout=TIMEOUT)
    assert again == first
    version = first.incident.version
    events = history(stack, incident.id, version)
    assert [event_of(e)[0] for e in events].count("declared") == 1


def test_the_same_declaration_sent_twice_at_once_is_answered_alike(stack: Stack) -> None:
    """A retry sent while the first attempt is still in flight (a client that gave up
    waiting too early) waits for it and gets its answer, never the rule's refusal of the
    declaration the first attempt made."""
    chief = dispatch_as(stack, "chief-qian", "operator", "commander")
    incidents = [chief.ReportIncident(report_request(), timeout=TIMEOUT).incident
                 for _ in range(8)]

    def declare_twice(incident_id: str) -> list[Any]:
        declare = dispatch_pb2.DeclareIncidentRequest(
            incident_id=incident_id, category=incident_pb2.CATEGORY_ACCIDENT_DISASTER,
            hazard_type="gas_leak", grade=incident_pb2.GRADE_IV)
        key = [("idempotency-key", str(uuid.uuid4()))]
        sent = [chief.DeclareIncident.future(declare, metadata=key, timeout=TIMEOUT)
                for _ in range(2)]
        return [future.result() for future in sent]

    with ThreadPoolExecutor(4) as callers:
        answers = list(callers.map(declare_twice, [i.id for i in incidents]))
    for first, again in answers:
        assert again == first
        events = history(stack, first.incident.id, first.incident.version)
        assert [event_of(e)[0] for e in events].count("declared") == 1


# ---- imports kept apart ----


def test_an_import_never_shadows_a_live_incident(stack: Stack) -> None:
    officer = dispatch_as(stack, "officer-li", "operator")
    incident = officer.ReportIncident(report_request(), timeout=TIMEOUT).incident
    events = history(stack, incident.id, 1)
    refused(lambda: review_as(stack, "officer-li", "operator").ImportHistory(
        review_pb2.ImportHistoryRequest(events=events), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED, "evaluator")
    evaluator = review_as(stack, "evaluator-sun", "evaluator")
    imported = evaluator.ImportHistory(review_pb2.ImportHistoryRequest(events=events),
                                       timeout=TIMEOUT)
    assert imported.incident_id != incident.id
    assert imported.original_incident_id == incident.id and len(imported.digest) == 64
    # The live incident goes on, and review keeps its events as they come.
    officer.DismissIncident(dispatch_pb2.IncidentStepRequest(incident_id=incident.id),
                            timeout=TIMEOUT)
    live = history(stack, incident.id, 2)
    assert [event_of(e)[0] for e in live] == ["reported", "dismissed"]
    assert len(history(stack, imported.incident_id, 1)) == 1
    summaries = {h.incident_id: h for h in evaluator.ListHistories(
        review_pb2.ListHistoriesRequest(page=common_pb2.PageRequest(page_size=1000)),
        timeout=TIMEOUT).histories}
    assert summaries[imported.incident_id].imported.meta.actor == "evaluator-sun"
    assert not summaries[incident.id].HasField("imported")
    refused(lambda: evaluator.ImportHistory(review_pb2.ImportHistoryRequest(events=events),
                                            timeout=TIMEOUT),
            grpc.StatusCode.ALREADY_EXISTS, imported.incident_id)


# ---- NATS: a user per service ----


def test_nats_refuses_a_client_without_credentials(stack: Stack) -> None:
    if stack.nats is None:
        pytest.skip("an external NATS has its own users")
    assert stack.authority is not None

    async def connect() -> None:
        await nats.connect(stack.nats_url or "", allow_reconnect=False, connect_timeout=2,
                           max_reconnect_attempts=0,
                           tls=ssl.create_default_context(cafile=str(stack.authority.ca_file)))

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(connect())


def test_a_service_cannot_publish_another_services_events(stack: Stack) -> None:
    """dispatch's credentials forge a warning (monitor's) and a unit assignment
    (resources'): the server refuses both, and nothing downstream records them."""
    if stack.nats is None:
        pytest.skip("an external NATS has its own users")
    warning_id = f"forged-cell/gas_leak/{uuid.uuid4().hex[:6]}"
    forged = monitor_pb2.WarningEvent(raised=monitor_pb2.WarningRaised(
        warning_id=warning_id, hazard="gas_leak", level=common_pb2.WARNING_LEVEL_RED,
        location=common_pb2.GeoPoint(lat=31.2, lon=121.4)))
    answer = resources_pb2.RequestEvent(answered=resources_pb2.RequestAnswered(
        request_id="forged", incident_id=str(uuid.uuid4())))

    async def forge() -> tuple[list[str], list[int]]:
        errors: list[str] = []

        async def on_error(error: Exception) -> None:
            errors.append(str(error))

        login = stack.nats_login("dispatch")
        nc = await nats.connect(stack.nats_url or "", user=login["user"],
                                password=login["password"], error_cb=on_error,
                                inbox_prefix="_INBOX_dispatch",
                                tls=ssl.create_default_context(cafile=login["ca_file"]))
        js = nc.jetstream()
        last = []
        for stream in ("LIFELINE_MONITOR", "LIFELINE_RESOURCES"):
            observer = await bus.connect(stack.nats_url or "", "t", **stack.nats_login())
            last.append((await observer.jetstream().stream_info(stream)).state.last_seq)
            await observer.close()
        for subject, message in (("lifeline.monitor.warning.raised", forged),
                                 ("lifeline.resources.request.answered", answer)):
            headers = {bus.TYPE_HEADER: message.DESCRIPTOR.full_name}
            with pytest.raises(Exception):  # noqa: B017 - refused: timeout or permission
                await js.publish(subject, message.SerializeToString(), headers=headers,
                                 timeout=1)
        await nc.flush()
        await nc.close()
        observer = await bus.connect(stack.nats_url or "", "t", **stack.nats_login())
        after = [(await observer.jetstream().stream_info(s)).state.last_seq
                 for s in ("LIFELINE_MONITOR", "LIFELINE_RESOURCES")]
        await observer.close()
        assert after == last, "a forged message entered a stream"
        return errors, after

    errors, _ = asyncio.run(forge())
    assert any("permissions violation" in e.lower() for e in errors), errors
    reader = dispatch_as(stack, "auditor", "viewer")
    refused(lambda: reader.GetIncident(dispatch_pb2.GetIncidentRequest(
        incident_id=str(incident_id_for_warning(warning_id))), timeout=TIMEOUT),
        grpc.StatusCode.NOT_FOUND)
