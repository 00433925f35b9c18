"""The role matrix: which roles may call which RPC, loaded from data (roles.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeline.errors import PermissionDenied
from lifeline.identity import Identity

DEFAULT_MATRIX = Path(__file__).with_name("roles.toml")
OWN_DEPARTMENT = ":own-department"


@dataclass(frozen=True)
class Grant:
    role: str
    own_department_only: bool


class RoleMatrix:
    def __init__(self, roles: dict[str, str], grants: dict[str, list[Grant]],
                 acting_for_others: frozenset[str]) -> None:
        self.roles, self.grants, self.acting_for_others = roles, grants, acting_for_others

    @classmethod
    def load(cls, path: Path = DEFAULT_MATRIX) -> RoleMatrix:
        data = tomllib.loads(Path(path).read_text())
        roles: dict[str, str] = data["roles"]
        groups: dict[str, list[str]] = data.get("groups", {})

        def known(role: str, where: str) -> str:
            if role not in roles:
                raise ValueError(f"{path}: {where}: unknown role {role!r}")
            return role

        grants: dict[str, list[Grant]] = {}
        for service, methods in data.get("rpc", {}).items():
            for method, entries in methods.items():
                where = f"rpc.{service}.{method}"
                expanded: list[Grant] = []
                for entry in entries:
                    if entry.startswith("@"):
                        expanded += [Grant(known(r, where), False) for r in groups[entry[1:]]]
                    else:
                        role = entry.removesuffix(OWN_DEPARTMENT)
                        expanded.append(Grant(known(role, where), entry != role))
                grants[f"/{service}/{method}"] = expanded
        acting = frozenset(known(r, "acting_for_others")
                           for r in data.get("acting_for_others", {}).get("roles", []))
        return cls(roles, grants, acting)

    def allowed_roles(self, method: str) -> list[str]:
        return [g.role for g in self.grants.get(method, [])]

    def authorize(self, method: str, claims: dict[str, Any]) -> Identity:
        """The caller's identity for this call, or PERMISSION_DENIED naming the roles that
        may make it."""
        held = frozenset(claims.get("roles", ())) & self.roles.keys()
        department = str(claims.get("department") or "")
        grants = self.grants.get(method)
        if grants is None:
            raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} is not in the role matrix; "
                                   "no role may call it")
        identity = Identity(str(claims["sub"]), held, department,
                            acts_for_others=bool(held & self.acting_for_others))
        if any(g.role in held and not g.own_department_only for g in grants):
            return identity
        if department and any(g.role in held and g.own_department_only for g in grants):
            return Identity(identity.name, held, department, scope=department,
                            acts_for_others=identity.acts_for_others)
        needed = ", ".join(dict.fromkeys(
            g.role + (" (with a department)" if g.own_department_only else "")
            for g in grants))
        raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs role {needed}; "
                               f"{claims['sub']!r} has {', '.join(sorted(held)) or 'none'}")
