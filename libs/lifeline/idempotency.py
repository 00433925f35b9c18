"""Idempotent retries: a mutating call sent with an `idempotency-key` header is answered
once; a retry with the same key and the same request gets the first answer and writes
nothing, the same key with another request is refused.

The first answer is kept as a `ClientRequest` aggregate written in the same transaction as
the events the request caused, so "it happened" and "this is what was answered" cannot part.
Keys are per caller: one caller's key never reaches another caller's answer.

An `Attempt` is one try of a command: it commits only while its caller still waits for it
(the call's deadline, and the runtime's abandoning it when it answers without it), so a
retry never meets an earlier attempt committing behind its back.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from lifeline.errors import Abandoned, InvalidArgument
from lifeline.events import stable_id

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 128


@dataclass(frozen=True)
class RequestKey:
    caller: str
    key: str
    method: str
    fingerprint: str

    @property
    def aggregate_id(self) -> UUID:
        return stable_id("client-request", self.caller, self.key)


_pending: ContextVar[RequestKey | None] = ContextVar("lifeline_request_key", default=None)
_deadline: ContextVar[float | None] = ContextVar("lifeline_call_deadline", default=None)


def pending() -> RequestKey | None:
    """The idempotency key of the call being served, if the caller sent one."""
    return _pending.get()


class Attempt:
    """One try of a caller's command, handed to the write that would commit it."""

    def __init__(self, deadline: float | None = None) -> None:
        #: time.monotonic() past which the caller no longer waits (None: no deadline).
        self.deadline = deadline
        self._abandoned = threading.Event()

    @classmethod
    def of_call(cls) -> Attempt:
        """An attempt of the call being served, with its deadline."""
        return cls(_deadline.get())

    def abandon(self) -> None:
        """The caller was answered without this attempt: it must not commit."""
        self._abandoned.set()

    def remaining(self) -> float | None:
        """Seconds the caller still waits (None: no deadline); Abandoned if none left."""
        if self._abandoned.is_set():
            raise Abandoned("the caller was answered before this attempt could write; "
                            "nothing was written")
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Abandoned("the call's deadline passed before its write; nothing was "
                            "written")
        return left


def admit(caller: str, method: str, key: str | None, request: Message,
          time_remaining: float | None = None) -> None:
    """Check the call's key (if any) and make it and the call's deadline current."""
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)
    if key is None:
        return
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidArgument(HEADER, f"must be 1 to {MAX_KEY_LENGTH} printable characters "
                                      "(a UUID is a good key)")
    digest = hashlib.sha256(method.encode() + b"\0"
                            + request.SerializeToString(deterministic=True)).hexdigest()
    _pending.set(RequestKey(caller, key, method, digest))


class ClientRequest(Aggregate):
    """The first answer given to one caller's key. Internal: never published."""

    class Answered(Aggregate.Created):
        caller: str
        key: str
        method: str
        fingerprint: str
        response_type: str
        response: str

    def __init__(self, caller: str, key: str, method: str, fingerprint: str,
                 response_type: str, response: str) -> None:
        self.caller, self.key, self.method = caller, key, method
        self.fingerprint, self.response_type, self.response = (fingerprint, response_type,
                                                               response)

    @classmethod
    def answered(cls, key: RequestKey, response: Message) -> ClientRequest:
        return cls._create(cls.Answered, id=key.aggregate_id, caller=key.caller, key=key.key,
                           method=key.method, fingerprint=key.fingerprint,
                           response_type=response.DESCRIPTOR.full_name,
                           response=base64.b64encode(response.SerializeToString()).decode())

    def answer_to(self, key: RequestKey) -> Message:
        """The first answer, if key carries the same request; else INVALID_ARGUMENT."""
        if (self.method, self.fingerprint) != (key.method, key.fingerprint):
            raise InvalidArgument(HEADER, f"{key.key[:40]!r} was first used for a different "
                                          "request; send a new key with each new request")
        descriptor = descriptor_pool.Default().FindMessageTypeByName(self.response_type)
        response: Message = message_factory.GetMessageClass(descriptor)()
        response.ParseFromString(base64.b64decode(self.response))
        return response
