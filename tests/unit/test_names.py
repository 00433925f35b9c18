"""Known names without servers: what the plans name, how a refusal reads, and that a
registry's names and the city's configured ones count as known."""

from __future__ import annotations

import pytest
from lifeline import names
from lifeline.errors import InvalidArgument
from lifeline.plans import default_library


def test_the_plans_name_hazards_unit_kinds_and_departments() -> None:
    found = names.from_plans(default_library())
    assert {"urban_flooding", "gas_leak", "gas_explosion"} <= found[names.HAZARD]
    assert {"police_car", "fire_engine", "pump_truck"} <= found[names.UNIT_KIND]
    assert {"fire", "police", "water", "utilities"} <= found[names.DEPARTMENT]


def test_a_refusal_names_the_field_and_the_closest_names() -> None:
    catalog = names.Catalog("resources", (names.UNIT_KIND,), names.from_plans(default_library()))
    with pytest.raises(InvalidArgument) as caught:
        catalog.check("kind", names.UNIT_KIND, "polic_car")
    assert str(caught.value) == ("kind: unit kind 'polic_car' is not known; "
                                 "did you mean 'police_car'?")
    with pytest.raises(InvalidArgument, match=r"^kind: unit kind 'zeppelin' is not known \(known: "
                                              r"ambulance, .*\)$"):
        catalog.check("kind", names.UNIT_KIND, "zeppelin")
    catalog.check("kind", names.UNIT_KIND, "zeppelin", new_names=True)  # a city adds one
    catalog.check("kind", names.UNIT_KIND, "")  # "is required" is the field's own check


def test_configured_and_registered_names_are_known() -> None:
    registry: names.Names = {names.DEPARTMENT: {"sanitation"}}
    catalog = names.Catalog("resources", (names.DEPARTMENT,),
                            names.configured({"department": ("harbour",)}),
                            registered=lambda: registry)
    catalog.check("department", names.DEPARTMENT, "harbour")
    catalog.check("department", names.DEPARTMENT, "sanitation")
    assert catalog.names(names.DEPARTMENT) == ["harbour", "sanitation"]
    registry[names.DEPARTMENT].add("parks")
    assert [k.names for k in catalog.answer(names.pb.ListKnownNamesRequest()).known] == [
        ["harbour", "parks", "sanitation"]]
