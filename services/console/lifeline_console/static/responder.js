// A crew's phone: its unit's assignment, destination and route, status in one tap, and the
// phone's position shared with resources like any vehicle's report.
import { LivePicture, act, el, getJSON, signedIn, state, unitStatus, words } from "/static/common.js";

const L = window.L;
const picker = document.getElementById("unit");
const said = document.getElementById("said");
let live = null;
let sharing = null;
const routeMap = L.map("route", { zoomControl: false });
const routeLayer = L.layerGroup().addTo(routeMap);

const unitId = () => picker.value;
const point = (p) => (p && (p.lat || p.lon) ? [p.lat ?? 0, p.lon ?? 0] : null);

function render() {
  const units = [...(live.things.unit?.values() ?? [])]
    .filter((u) => !window.me?.department || u.department === window.me.department)
    .sort((a, b) => a.id.localeCompare(b.id));
  const chosen = unitId() || localStorage.getItem("lifeline-unit") || units[0]?.id || "";
  picker.replaceChildren(...units.map((u) => el("option", { value: u.id, selected: u.id === chosen },
    `${u.id} (${words(u.kind, "")})`)));
  const unit = live.things.unit?.get(unitId());
  document.getElementById("status").textContent = unit
    ? `${unit.id}: ${unitStatus(unit.status)}` : "no unit of your department";
  const incident = unit?.incident_id && live.things.incident?.get(unit.incident_id);
  document.getElementById("assignment").replaceChildren(...(incident ? [
    el("h2", {}, `Go to ${incident.id}`),
    el("p", {}, `${words(incident.hazard, "")} — ${state(incident)}`),
    el("p", {}, incident.description ?? ""),
  ] : [el("p", {}, unit?.incident_id ? `assigned to ${unit.incident_id}` : "no assignment")]));
  routeLayer.clearLayers();
  const from = point(unit?.position) || point(unit?.home);
  const to = incident && point(incident.location);
  if (from) L.circleMarker(from, { radius: 7, color: "#1e6fd9" }).addTo(routeLayer);
  if (to) L.circleMarker(to, { radius: 9, color: "#d7191c" }).addTo(routeLayer);
  if (from && to) {
    L.polyline([from, to], { dashArray: "6 6" }).addTo(routeLayer);
    routeMap.fitBounds([from, to], { padding: [30, 30], maxZoom: 16 });
  } else if (from) routeMap.setView(from, 15);
}

async function setStatus(status) {
  try {
    await act("set-unit-status", { id: unitId(), status });
    said.textContent = `${unitId()}: ${unitStatus(status)}`;
  } catch (problem) {
    said.textContent = problem.message;
  }
}

async function report(position) {
  try {
    await act("report-position", { reports: [{ unit_id: unitId(),
      position: { lat: position.coords.latitude, lon: position.coords.longitude },
      measured_at: new Date(position.timestamp).toISOString() }] });
    said.textContent = `position shared (${position.coords.latitude.toFixed(5)}, ${position.coords.longitude.toFixed(5)})`;
  } catch (problem) {
    said.textContent = problem.message;
  }
}

function toggleSharing(button) {
  if (sharing !== null) {
    navigator.geolocation.clearWatch(sharing);
    sharing = null;
  } else {
    sharing = navigator.geolocation.watchPosition(report,
      (problem) => { said.textContent = `position unavailable: ${problem.message}`; },
      { enableHighAccuracy: true, maximumAge: 5000 });
  }
  button.setAttribute("aria-pressed", String(sharing !== null));
  button.textContent = sharing !== null ? "Sharing position" : "Share position";
}

async function start() {
  const who = await signedIn();
  if (!who) return;
  window.me = who;
  picker.addEventListener("change", () => { localStorage.setItem("lifeline-unit", unitId()); render(); });
  document.getElementById("en-route").addEventListener("click", () => setStatus("UNIT_STATUS_EN_ROUTE"));
  document.getElementById("on-scene").addEventListener("click", () => setStatus("UNIT_STATUS_ON_SCENE"));
  document.getElementById("available").addEventListener("click", () => setStatus("UNIT_STATUS_AVAILABLE"));
  document.getElementById("share").addEventListener("click", (e) => toggleSharing(e.target));
  const base = await getJSON("/api/basemap");
  routeMap.setView(base.centre, 14);  // Leaflet draws nothing on a map without a view
  if (base.tiles) L.tileLayer(base.tiles, { maxZoom: 19 }).addTo(routeMap);
  for (const road of base.roads.features) {
    L.polyline(road.geometry.coordinates.map(([lon, lat]) => [lat, lon]),
      { color: "#9aa5b1", weight: 4 }).bindTooltip(road.properties.name).addTo(routeMap);
  }
  live = new LivePicture({
    onSnapshot: render, onChanges: render,
    onConnection: (up) => {
      document.getElementById("lost").hidden = up;
      document.getElementById("connection").textContent = up ? "live" : "reconnecting…";
    },
  });
}

start();
