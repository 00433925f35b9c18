"""Errors as values a caller can act on; the gRPC edge maps each to its status code."""

from __future__ import annotations

import grpc


class LifelineError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(LifelineError):
    """A request field is missing or malformed; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(LifelineError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")


class AlreadyExists(LifelineError):
    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} already exists")


class RuleViolation(LifelineError):
    """An illegal lifecycle step; the message says which rule refused it."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule


class Conflict(LifelineError):
    """Someone else changed the same thing at the same moment; safe to retry."""

    code = grpc.StatusCode.ABORTED


class Unavailable(LifelineError):
    code = grpc.StatusCode.UNAVAILABLE


class Abandoned(LifelineError):
    """A command's attempt whose caller was answered without it (its deadline passed, or
    the database went down meanwhile): it wrote nothing, and never will."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(LifelineError):
    """The caller asked for more than the service keeps for it (a watch that fell behind)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(LifelineError):
    """No credentials, or credentials that do not verify; the message says which."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(LifelineError):
    """A verified caller asked for something outside its role; the message names the role
    it needs."""

    code = grpc.StatusCode.PERMISSION_DENIED
