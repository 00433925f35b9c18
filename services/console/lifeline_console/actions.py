"""What a person can do from the console, each a service RPC called with that person's own
token: the service records them as the actor and its role matrix decides, exactly as for
any other client. The console checks nothing of its own beyond the request's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import Message
from lifeline import idempotency
from lifeline.dispatch.v1 import dispatch_pb2 as dispatch
from lifeline.identity.roles import RoleMatrix
from lifeline.monitor.v1 import monitor_pb2 as monitor
from lifeline.resources.v1 import resources_pb2 as resources
from lifeline.review.v1 import review_pb2 as review

SERVICE_NAMES = {"monitor": "lifeline.monitor.v1.MonitorService",
                 "dispatch": "lifeline.dispatch.v1.DispatchService",
                 "resources": "lifeline.resources.v1.ResourcesService",
                 "review": "lifeline.review.v1.ReviewService"}


@dataclass(frozen=True)
class Action:
    service: str
    method: str
    request: type[Message]
    #: The RPC takes a stream of requests (the page sends one).
    streaming: bool = False

    @property
    def path(self) -> str:
        return f"/{SERVICE_NAMES[self.service]}/{self.method}"


ACTIONS: dict[str, Action] = {
    "acknowledge-warning": Action("monitor", "AcknowledgeWarning",
                                  monitor.AcknowledgeWarningRequest),
    "declare-incident": Action("dispatch", "DeclareIncident", dispatch.DeclareIncidentRequest),
    "dismiss-incident": Action("dispatch", "DismissIncident", dispatch.IncidentStepRequest),
    "acknowledge-order": Action("dispatch", "AcknowledgeOrder", dispatch.OrderStepRequest),
    "complete-order": Action("dispatch", "CompleteOrder", dispatch.OrderStepRequest),
    "verify-order": Action("dispatch", "VerifyOrder", dispatch.OrderStepRequest),
    "set-unit-status": Action("resources", "UpdateUnitStatus",
                              resources.UpdateUnitStatusRequest),
    "report-position": Action("resources", "ReportPositions", resources.ReportPositionsRequest,
                              streaming=True),
    "accept-move-up": Action("resources", "AcceptMoveUp", resources.MoveUpDecisionRequest),
}

#: Reads a person makes with their own token (the incident's timeline, the city as of a time).
READS: dict[str, Action] = {
    "incident-history": Action("review", "GetIncidentHistory",
                               review.GetIncidentHistoryRequest),
    "city-as-of": Action("review", "GetCityAsOf", review.GetCityAsOfRequest),
}

#: gRPC codes as the HTTP statuses the page reads them by.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class Refused(Exception):
    """An action the console could not forward or the service refused: HTTP status, gRPC
    code name and the service's own words."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse(action: Action, body: Any) -> Message:
    if not isinstance(body, dict):
        raise Refused(400, "INVALID_ARGUMENT", "the body must be a JSON object")
    try:
        return ParseDict(body, action.request())
    except ParseError as error:
        raise Refused(400, "INVALID_ARGUMENT", str(error)) from None


def allowed(matrix: RoleMatrix, roles: frozenset[str], department: str) -> list[str]:
    """The actions these roles may take, by the services' own role matrix (what the page
    offers; the services decide again on every call)."""
    names = []
    for name, action in ACTIONS.items():
        grants = matrix.grants.get(action.path, [])
        if any(g.role in roles and (department or not g.own_department_only) for g in grants):
            names.append(name)
    return names


async def call(channel: grpc.aio.Channel, action: Action, request: Message, token: str,
               idempotency_key: str = "", timeout: float = 10) -> Any:
    """Call the action's RPC as the token's holder (with the page's idempotency key); its
    answer as JSON (a list of them for a streaming answer)."""
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)
    if idempotency_key:
        metadata += ((idempotency.HEADER, idempotency_key),)
    response_type = _response_type(action)
    try:
        if action.streaming:
            async def one() -> AsyncIterator[Message]:
                yield request

            answer = await channel.stream_unary(
                action.path, request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )(one(), metadata=metadata, timeout=timeout)
        elif _streams_answers(action):
            stream = channel.unary_stream(
                action.path, request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )(request, metadata=metadata, timeout=timeout)
            return [_json(message) async for message in stream]
        else:
            answer = await channel.unary_unary(
                action.path, request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )(request, metadata=metadata, timeout=timeout)
    except grpc.aio.AioRpcError as error:
        raise Refused(HTTP_STATUS.get(error.code(), 502), error.code().name,
                      error.details() or error.code().name) from None
    return _json(answer)


def _json(message: Message) -> Any:
    return MessageToDict(message, preserving_proto_field_name=True)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _method(action: Action) -> Any:
    module = {"monitor": monitor, "dispatch": dispatch, "resources": resources,
              "review": review}[action.service]
    service = module.DESCRIPTOR.services_by_name[SERVICE_NAMES[action.service].rsplit(".", 1)[1]]
    return service.methods_by_name[action.method]


def _response_type(action: Action) -> type[Message]:
    return message_factory.GetMessageClass(_method(action).output_type)


def _streams_answers(action: Action) -> bool:
    return bool(_method(action).server_streaming)
