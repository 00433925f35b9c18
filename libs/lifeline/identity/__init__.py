"""Who is calling, and what they may do.

The gRPC edge verifies the caller's bearer token (`tokens`), checks the role matrix
(`roles`), and makes the caller's identity current for the call; servicers read it with
`caller()`, never from a request field. `tls` and `dev` make the certificates, keys and
NATS users a local stack runs with.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from lifeline.errors import PermissionDenied


@dataclass(frozen=True)
class Identity:
    """A verified caller: a person or a system, its roles, and its department if any."""

    name: str
    roles: frozenset[str]
    department: str = ""
    #: Set for this call when the caller is allowed only for its own department's things.
    scope: str = ""
    acts_for_others: bool = field(default=False, compare=False)

    def require_department(self, department: str, what: str) -> None:
        """A department-bound caller may touch only its own department's units and orders."""
        if self.scope and department != self.scope:
            raise PermissionDenied(f"{what} belongs to department {department!r}; "
                                   f"{self.name!r} acts for {self.scope!r} only")


#: Used when authentication is explicitly switched off (LIFELINE_AUTH=off).
ANONYMOUS = Identity("anonymous", frozenset(), acts_for_others=True)

_current: ContextVar[Identity] = ContextVar("lifeline_identity", default=ANONYMOUS)


def caller() -> Identity:
    """The identity of the call being served."""
    return _current.get()


def set_caller(identity: Identity) -> None:
    _current.set(identity)
