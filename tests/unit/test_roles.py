"""The role matrix and tokens, without servers: every RPC of the four services has an entry,
roles are checked as the matrix says, department-bound roles are scoped, and tokens that
are forged, expired or malformed are refused."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lifeline.common.v1 import parking_pb2
from lifeline.dispatch.v1 import dispatch_pb2
from lifeline.errors import PermissionDenied, Unauthenticated
from lifeline.identity.roles import RoleMatrix
from lifeline.identity.tokens import TokenIssuer, TokenVerifier, parse_ttl
from lifeline.monitor.v1 import monitor_pb2
from lifeline.resources.v1 import resources_pb2
from lifeline.review.v1 import review_pb2

SERVICES = [dispatch_pb2.DESCRIPTOR.services_by_name["DispatchService"],
            monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"],
            resources_pb2.DESCRIPTOR.services_by_name["ResourcesService"],
            review_pb2.DESCRIPTOR.services_by_name["ReviewService"],
            # Served by all four; tests call it on one of them (test_identity.SERVICE_OF).
            parking_pb2.DESCRIPTOR.services_by_name["ParkingService"],
            parking_pb2.DESCRIPTOR.services_by_name["OutboxService"]]
ALL_RPCS = sorted(f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods)
MATRIX = RoleMatrix.load()


def claims(*roles: str, department: str = "", sub: str = "li") -> dict[str, object]:
    found: dict[str, object] = {"sub": sub, "roles": list(roles)}
    if department:
        found["department"] = department
    return found


def test_every_rpc_of_the_services_is_in_the_matrix_and_nothing_else_is() -> None:
    assert len(ALL_RPCS) > 40  # the four services' descriptors were all found
    assert sorted(MATRIX.grants) == ALL_RPCS


@pytest.mark.parametrize("method", ALL_RPCS)
def test_each_role_is_allowed_exactly_what_the_matrix_grants(method: str) -> None:
    allowed = set(MATRIX.allowed_roles(method))
    assert allowed, f"{method}: no role may call it"
    for role in MATRIX.roles:
        # A department-bound role carries its department, as its tokens must.
        caller = claims(role, department="fire")
        if role in allowed:
            assert MATRIX.authorize(method, caller).name == "li"
        else:
            with pytest.raises(PermissionDenied, match=method.rsplit("/", 1)[-1]):
                MATRIX.authorize(method, caller)


def test_the_matrix_reads_as_an_operator_would_expect() -> None:
    def may(role: str, rpc: str) -> bool:
        return role in MATRIX.allowed_roles(rpc)

    dispatch = "/lifeline.dispatch.v1.DispatchService/"
    assert may("viewer", dispatch + "GetIncident")
    assert not may("viewer", dispatch + "DismissIncident")
    assert may("call-taker", dispatch + "ReportIncident")
    assert not may("call-taker", dispatch + "DeclareIncident")
    assert may("commander", dispatch + "IssueOrder")
    assert not may("operator", dispatch + "IssueOrder")
    assert may("evaluator", "/lifeline.review.v1.ReviewService/ImportHistory")
    assert not may("admin", "/lifeline.review.v1.ReviewService/ImportHistory")
    assert may("sensor-gateway", "/lifeline.monitor.v1.MonitorService/IngestReadingBatch")
    assert not may("operator", "/lifeline.monitor.v1.MonitorService/IngestReadingBatch")


def test_a_refusal_names_the_roles_that_may() -> None:
    with pytest.raises(PermissionDenied) as caught:
        MATRIX.authorize("/lifeline.dispatch.v1.DispatchService/DismissIncident",
                         claims("viewer"))
    assert str(caught.value) == ("DismissIncident needs role operator, commander; "
                                 "'li' has viewer")


def test_an_rpc_missing_from_the_matrix_is_refused_to_everyone() -> None:
    with pytest.raises(PermissionDenied, match="not in the role matrix"):
        MATRIX.authorize("/lifeline.dispatch.v1.DispatchService/Nuke", claims(*MATRIX.roles))


def test_a_department_role_is_scoped_to_its_own_department() -> None:
    ack = "/lifeline.dispatch.v1.DispatchService/AcknowledgeOrder"
    police = MATRIX.authorize(ack, claims("department", department="police"))
    assert police.scope == "police"
    police.require_department("police", "order O-1")
    with pytest.raises(PermissionDenied, match="department 'fire'"):
        police.require_department("fire", "order O-2")
    # Without a department the role grants nothing for scoped calls.
    with pytest.raises(PermissionDenied, match="with a department"):
        MATRIX.authorize(ack, claims("department"))
    # A commander is not scoped, whatever its department.
    assert MATRIX.authorize(ack, claims("commander", department="police")).scope == ""


def test_only_relaying_systems_may_act_for_others() -> None:
    report = "/lifeline.dispatch.v1.DispatchService/ReportIncident"
    assert MATRIX.authorize(report, claims("call-taker")).acts_for_others
    assert not MATRIX.authorize(report, claims("operator")).acts_for_others


def test_unknown_roles_in_a_token_grant_nothing() -> None:
    with pytest.raises(PermissionDenied, match="has none"):
        MATRIX.authorize("/lifeline.dispatch.v1.DispatchService/GetIncident",
                         claims("superuser"))


# ---- tokens ----

KEY = Ed25519PrivateKey.generate()
ISSUER = TokenIssuer(KEY)
VERIFIER = TokenVerifier([KEY.public_key()])


def test_a_token_verifies_to_its_claims() -> None:
    token = ISSUER.issue("officer-li", ["operator", "viewer"], department="police")
    found = VERIFIER.verify(token)
    assert (found["sub"], found["roles"], found["department"]) == (
        "officer-li", ["operator", "viewer"], "police")


def test_a_token_signed_by_another_key_is_refused() -> None:
    forged = TokenIssuer(Ed25519PrivateKey.generate()).issue("chief", ["commander"])
    with pytest.raises(Unauthenticated, match="signature"):
        VERIFIER.verify(forged)


def test_an_expired_token_is_refused() -> None:
    old = jwt.encode({"sub": "li", "roles": ["viewer"], "iss": "lifeline", "aud": "lifeline",
                      "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
                     KEY, algorithm="EdDSA")
    with pytest.raises(Unauthenticated, match="expired"):
        VERIFIER.verify(old)


@pytest.mark.parametrize("claims_", [
    {"sub": "li", "roles": ["viewer"], "iss": "lifeline", "aud": "someone-else"},
    {"sub": "li", "roles": ["viewer"], "iss": "elsewhere", "aud": "lifeline"},
    {"sub": "li", "roles": "viewer", "iss": "lifeline", "aud": "lifeline"},
    {"roles": ["viewer"], "iss": "lifeline", "aud": "lifeline"},
])
def test_a_token_with_wrong_claims_is_refused(claims_: dict[str, object]) -> None:
    now = int(time.time())
    token = jwt.encode({**claims_, "iat": now, "exp": now + 60}, KEY, algorithm="EdDSA")
    with pytest.raises(Unauthenticated):
        VERIFIER.verify(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(Unauthenticated):
        VERIFIER.verify(garbage)


def test_an_unsigned_token_is_refused() -> None:
    now = int(time.time())
    unsigned = jwt.encode({"sub": "li", "roles": ["admin"], "iss": "lifeline",
                           "aud": "lifeline", "iat": now, "exp": now + 60}, None,
                          algorithm="none")
    with pytest.raises(Unauthenticated):
        VERIFIER.verify(unsigned)


def test_ttls_read_as_people_write_them() -> None:
    assert parse_ttl("8h") == timedelta(hours=8)
    assert parse_ttl("30m") == timedelta(minutes=30)
    assert parse_ttl("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match=r"e\.g\. 30m"):
        parse_ttl("forever")
