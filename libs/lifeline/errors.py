"""Errors as values a caller can act on, each naming the gRPC status the edge answers with
(by its name, so the domain that raises them needs no gRPC)."""

from __future__ import annotations


class LifelineError(Exception):
    #: The name of a `grpc.StatusCode` member.
    code: str = "UNKNOWN"


class InvalidArgument(LifelineError):
    """A request field is missing or malformed; the message names the field."""

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(LifelineError):
    code = "NOT_FOUND"

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")


class AlreadyExists(LifelineError):
    code = "ALREADY_EXISTS"

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} already exists")


class RuleViolation(LifelineError):
    """An illegal lifecycle step; the message says which rule refused it."""

    code = "FAILED_PRECONDITION"

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule


class Conflict(LifelineError):
    """Someone else changed the same thing at the same moment; safe to retry."""

    code = "ABORTED"


class Unavailable(LifelineError):
    code = "UNAVAILABLE"


class Abandoned(LifelineError):
    """A command's attempt whose caller was answered without it (its deadline passed, or
    the database went down meanwhile): it wrote nothing, and never will."""

    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(LifelineError):
    """The caller asked for more than the service keeps for it (a watch that fell behind)."""

    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(LifelineError):
    """No credentials, or credentials that do not verify; the message says which."""

    code = "UNAUTHENTICATED"


class PermissionDenied(LifelineError):
    """A verified caller asked for something outside its role; the message names the role
    it needs."""

    code = "PERMISSION_DENIED"
