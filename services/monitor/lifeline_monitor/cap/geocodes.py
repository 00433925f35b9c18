"""Which district an alert's geocode names: administrative division codes under the value
names the city knows, matched the way each scheme nests its codes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from lifeline.monitor.v1 import monitor_pb2 as pb

#: Value names of administrative codes a city knows unless it says otherwise.
DEFAULT_NAMES = ("GB/T 2260", "SAME", "FIPS6", "UGC")
DEFAULT_DUTY_PARTY = "city-emergency-office"
DIGITS = re.compile(r"^[0-9]+$")


def scheme(value_name: str) -> str:
    """A value name as compared: case, spaces and punctuation aside ("GB/T 2260" and
    "gbt2260" are one scheme)."""
    return re.sub(r"[^0-9A-Z]", "", value_name.upper())


def _gb2260(code: str) -> str:
    # GB/T 2260 nests by pairs of digits: 31 Shanghai, 3101 its districts, 310104 Xuhui;
    # a code ending in 00 pairs names everything under its prefix.
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


def matches(value_name: str, given: str, district_code: str) -> bool:
    """Whether an alert's geocode (value_name, given) names the district whose code is
    district_code in the same scheme: GB/T 2260 by prefix (a province's or a city's code
    names its districts, a township's its district), SAME by state and county (county 000:
    the whole state; subdivision 0: the whole county), any other scheme exactly."""
    name = scheme(value_name)
    given, district_code = given.strip(), district_code.strip()
    if name in ("GBT2260", "GB2260") and DIGITS.match(given) and DIGITS.match(district_code):
        wide, narrow = _gb2260(given), _gb2260(district_code)
        return narrow.startswith(wide) or wide.startswith(narrow)
    if name == "SAME" and len(given) == len(district_code) == 6 \
            and DIGITS.match(given) and DIGITS.match(district_code):
        if given[1:3] != district_code[1:3]:
            return False
        if given[3:] == "000":
            return True
        return given[3:] == district_code[3:] and (
            "0" in (given[0], district_code[0]) or given[0] == district_code[0])
    return given.upper() == district_code.upper()


def known(names: Sequence[str]) -> set[str]:
    """The schemes a city knows (its configured names, else the defaults)."""
    return {scheme(n) for n in (names or DEFAULT_NAMES)}


def districts_named(index: pb.GridIndex, geocodes: Iterable[tuple[str, str]]
                    ) -> list[pb.DistrictPlace]:
    """The districts of the index that the geocodes name (schemes the city does not know
    name none)."""
    schemes = known(index.city.geocode_names)
    wanted = [(n, v) for n, v in geocodes if scheme(n) in schemes]
    return [d for d in index.districts
            if any(scheme(code.value_name) == scheme(n) and matches(n, v, code.value)
                   for n, v in wanted for code in d.geocodes)]


def duty_party(index: pb.GridIndex | None) -> str:
    return (index.city.duty_party if index is not None else "") or DEFAULT_DUTY_PARTY
