"""The table between Lifeline's hazards and colours and CAP's category, event, urgency,
severity and certainty (monitor's README shows it)."""

from __future__ import annotations

from dataclasses import dataclass

from lifeline.common.v1 import common_pb2

L = common_pb2.WarningLevel


@dataclass(frozen=True)
class Hazard:
    category: tuple[str, ...]
    event: str
    response: str


#: hazard -> CAP category, event and responseType (out); in, an alert's event names its
#: hazard through the same table (or an eventCode `lifeline:hazard`).
HAZARDS: dict[str, Hazard] = {
    "urban_flooding": Hazard(("Met",), "Urban flooding", "Avoid"),
    "heavy_rain": Hazard(("Met",), "Rainstorm", "Prepare"),
    "river_flooding": Hazard(("Met",), "River flooding", "Prepare"),
    "embankment_overtopping": Hazard(("Met", "Infra"), "Embankment overtopping", "Evacuate"),
    "metro_flooding": Hazard(("Transport", "Met"), "Metro flooding", "Avoid"),
    "gas_leak": Hazard(("Safety", "Infra"), "Gas leak", "Avoid"),
    "gas_explosion_risk": Hazard(("Fire", "Safety"), "Gas explosion risk", "Evacuate"),
    "building_fire": Hazard(("Fire",), "Building fire", "Avoid"),
    "power_outage": Hazard(("Infra",), "Power outage", "Prepare"),
    "hospital_blackout": Hazard(("Health", "Infra"), "Hospital blackout", "Execute"),
    "water_pollution": Hazard(("Env",), "Water pollution", "Avoid"),
    "earthquake": Hazard(("Geo",), "Earthquake", "Assess"),
}
OTHER = Hazard(("Other",), "", "Monitor")


@dataclass(frozen=True)
class Colour:
    urgency: str
    severity: str
    certainty: str


#: colour -> CAP urgency, severity, certainty (out); in, severity gives the colour.
COLOURS: dict[int, Colour] = {
    L.WARNING_LEVEL_RED: Colour("Immediate", "Extreme", "Observed"),
    L.WARNING_LEVEL_ORANGE: Colour("Expected", "Severe", "Observed"),
    L.WARNING_LEVEL_YELLOW: Colour("Future", "Moderate", "Likely"),
    L.WARNING_LEVEL_BLUE: Colour("Future", "Minor", "Possible"),
}
CLEARED = Colour("Past", "Minor", "Observed")
SEVERITY_LEVEL = {"Extreme": L.WARNING_LEVEL_RED, "Severe": L.WARNING_LEVEL_ORANGE,
                  "Moderate": L.WARNING_LEVEL_YELLOW, "Minor": L.WARNING_LEVEL_BLUE,
                  "Unknown": L.WARNING_LEVEL_YELLOW}
MSG_TYPES = {"raised": "Alert", "updated": "Update", "acknowledged": "Update",
             "cleared": "Cancel"}
