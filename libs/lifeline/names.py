"""Names the system knows: hazards, unit kinds and departments.

A caller who types `polic_car` means `police_car`: where a request takes such a name, the
service that owns it refuses an unknown one with INVALID_ARGUMENT naming the field and the
closest known names, and lists what it knows (`ListKnownNames`, for shell completion).
What "known" means, per service:

- dispatch: the hazard types the emergency plans cover (an incident of another hazard
  could never be declared: add a plan), the departments the plans notify and give orders
  to, the unit kinds the plans request;
- monitor: hazards of the plans, of the coupled-risk rules, of registered sensors;
- resources: unit kinds and departments of the plans, of registered units (their kinds
  and capabilities) and depots;
- everywhere, the names the city configures: LIFELINE_HAZARDS, LIFELINE_UNIT_KINDS,
  LIFELINE_DEPARTMENTS (comma-separated).

A registry is how a city adds a name: registering a sensor, unit or depot with
`new_names` takes a name nothing knows yet, and from then on it is known.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping

from lifeline.common.v1 import names_pb2 as pb
from lifeline.errors import InvalidArgument
from lifeline.plans import PlanLibrary

HAZARD, UNIT_KIND, DEPARTMENT = pb.NAME_KIND_HAZARD, pb.NAME_KIND_UNIT_KIND, pb.NAME_KIND_DEPARTMENT
#: How each kind is called in a message and in the configuration (Settings.configured_names).
WORDS: dict[int, str] = {HAZARD: "hazard", UNIT_KIND: "unit kind", DEPARTMENT: "department"}
KEYS: dict[int, str] = {HAZARD: "hazard", UNIT_KIND: "unit_kind", DEPARTMENT: "department"}
#: Known names listed in a refusal when none is close.
LISTED = 12

Names = dict[int, set[str]]


def from_plans(plans: PlanLibrary) -> Names:
    """The hazards, departments and unit kinds the emergency plans name."""
    found: Names = {HAZARD: set(plans.hazard_types()), UNIT_KIND: set(), DEPARTMENT: set()}
    for plan in plans.plans:
        for spec in plan.grades.values():
            found[UNIT_KIND].update(kind for kind, _ in spec.units)
            found[DEPARTMENT].update(spec.notify)
            found[DEPARTMENT].update(order.department for order in spec.orders)
    return found


def configured(names: Mapping[str, Iterable[str]]) -> Names:
    """Settings.configured_names by kind."""
    return {kind: set(names.get(key, ())) for kind, key in KEYS.items()}


class Catalog:
    """The kinds of name one service owns: fixed ones (plans, configuration) and, read
    each time, those its registry uses."""

    def __init__(self, service: str, owned: Iterable[int], *fixed: Names,
                 registered: Callable[[], Names] | None = None) -> None:
        self.service, self.owned = service, tuple(owned)
        self.fixed: Names = {kind: set() for kind in self.owned}
        for names in fixed:
            for kind in self.owned:
                self.fixed[kind].update(names.get(kind, ()))
        self.registered = registered

    def in_registry(self) -> Names:
        """The names the registry uses now (read once for several checks)."""
        return self.registered() if self.registered is not None else {}

    def names(self, kind: int, registered: Names | None = None) -> list[str]:
        if registered is None:
            registered = self.in_registry()
        return sorted(self.fixed.get(kind, set()) | registered.get(kind, set()))

    def check(self, field: str, kind: int, value: str, *, new_names: bool = False,
              registered: Names | None = None) -> None:
        """Refuse a name this service does not know (empty: left to the field's own check;
        new_names: the caller adds it)."""
        if not value.strip() or new_names:
            return
        known = self.names(kind, registered)
        if value in known:
            return
        what = f"{WORDS[kind]} {value!r} is not known"
        close = difflib.get_close_matches(value, known, n=3)
        if close:
            quoted = [repr(c) for c in close]
            what += "; did you mean " + " or ".join(
                [", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted) + "?"
        elif known:
            shown = ", ".join(known[:LISTED]) + (", ..." if len(known) > LISTED else "")
            what += f" (known: {shown})"
        raise InvalidArgument(field, what)

    def answer(self, request: pb.ListKnownNamesRequest) -> pb.ListKnownNamesResponse:
        kinds = self.owned
        if request.kind:
            if request.kind not in self.owned:
                owned = ", ".join(KEYS[k] for k in self.owned)
                raise InvalidArgument("kind", f"{self.service} knows {owned} names; ask the "
                                              "service that owns the others")
            kinds = (request.kind,)
        registered = self.in_registry()
        return pb.ListKnownNamesResponse(known=[
            pb.KnownNames(kind=kind, names=self.names(kind, registered)) for kind in kinds])  # type: ignore[arg-type]
