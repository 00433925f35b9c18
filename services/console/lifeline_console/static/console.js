// The command centre's picture: the city on a map, the incident board, the selected
// incident, the warnings — live from the console's event stream — and the city as it was
// at any past field time, from review's replay of the record.
import {
  LEVEL_COLOURS, UNIT_COLOURS, LivePicture, act, clock, el, getJSON, grade, level, may, minutes,
  signedIn, state, unitStatus, words,
} from "/static/common.js";

const L = window.L;
const ENDED_ORDERS = new Set(["ORDER_STATUS_COMPLETED", "ORDER_STATUS_VERIFIED", "ORDER_STATUS_CANCELLED"]);
const ACTIVE_PHASES = ["INCIDENT_STATE_RESPONDING", "INCIDENT_STATE_DECLARED", "INCIDENT_STATE_WARNING",
  "INCIDENT_STATE_CONTAINED", "INCIDENT_STATE_RECOVERING", "INCIDENT_STATE_RECOVERED"];

// When each incident and each warning level was first drawn (ms since the epoch): the
// browser tests and bench/console.py read these to measure what a person waits.
window.lifelineSeen = {};
const seen = (key) => { window.lifelineSeen[key] ??= Date.now(); };

const map = L.map("map", { zoomControl: true, preferCanvas: false });
const fleetCanvas = L.canvas({ padding: 0.3 });
const layers = {
  cells: L.layerGroup().addTo(map), roads: L.layerGroup().addTo(map),
  warnings: L.layerGroup().addTo(map), closed: L.layerGroup().addTo(map),
  coverage: L.layerGroup().addTo(map), depots: L.layerGroup().addTo(map),
  lines: L.layerGroup().addTo(map), units: L.layerGroup().addTo(map),
  incidents: L.layerGroup().addTo(map), past: L.layerGroup(),
};
const drawn = { warning: new Map(), incident: new Map(), unit: new Map(), line: new Map(),
  road: new Map(), depot: new Map(), coverage: new Map() };
const roadLines = new Map();
// The units serving each incident, so an incident that moves redraws only their lines.
const serving = new Map();
const servingOf = new Map();
function serve(unitId, incidentId) {
  const before = servingOf.get(unitId);
  if (before === incidentId) return;
  serving.get(before)?.delete(unitId);
  servingOf.set(unitId, incidentId);
  if (incidentId) {
    if (!serving.has(incidentId)) serving.set(incidentId, new Set());
    serving.get(incidentId).add(unitId);
  }
}
let live = null;
let selected = null;
let travelling = false;

function fieldNow() {
  // Field time runs at the scenario's pace, not the wall clock's: the newest time anything
  // on the picture changed stands for now.
  let now = 0;
  for (const kind of ["incident", "warning"]) {
    for (const doc of live?.things[kind]?.values() ?? []) {
      now = Math.max(now, Date.parse(doc.updated_at || doc.raised_at || 0) || 0);
    }
  }
  return now || Date.now();
}

// ---- the map ----

function drawBase(base) {
  if (base.tiles) L.tileLayer(base.tiles, { maxZoom: 19 }).addTo(map);
  const bounds = [];
  for (const cell of base.cells) {
    L.polygon(cell.outline, { className: "grid-cell", weight: 1, fill: false })
      .bindTooltip(cell.name).addTo(layers.cells);
    bounds.push(...cell.outline);
  }
  for (const road of base.roads.features) {
    const line = road.geometry.coordinates.map(([lon, lat]) => [lat, lon]);
    roadLines.set(road.properties.id, { line, name: road.properties.name });
    L.polyline(line, { className: "road", weight: 4 }).bindTooltip(road.properties.name).addTo(layers.roads);
    bounds.push(...line);
  }
  if (bounds.length) map.fitBounds(bounds, { padding: [20, 20] });
  else map.setView(base.centre, 13);
}

function latlng(point) {
  return point && (point.lat || point.lon) ? [point.lat ?? 0, point.lon ?? 0] : null;
}

function put(kind, group, key, layer) {
  const old = drawn[kind].get(key);
  if (old) group.removeLayer(old);
  if (layer) { layer.addTo(group); drawn[kind].set(key, layer); } else drawn[kind].delete(key);
}

function drawWarning(key, warning) {
  if (!warning) return put("warning", layers.warnings, key, null);
  const colour = LEVEL_COLOURS[warning.level] || "#999";
  const outline = warning.outline?.length ? warning.outline : null;
  const name = warning.responsible?.cell_name || warning.grid_cell;
  const layer = outline
    ? L.polygon(outline, { className: `warning-cell ${level(warning.level)}`, color: colour,
      fillColor: colour, fillOpacity: 0.45, weight: 2 })
    : L.circleMarker(latlng(warning.location), { className: `warning-cell ${level(warning.level)}`,
      radius: 12, color: colour, fillColor: colour, fillOpacity: 0.5 });
  layer.bindTooltip(`${words(warning.hazard, "")} — ${level(warning.level)} — ${name}`);
  put("warning", layers.warnings, key, layer);
  seen(`warning:${key}:${warning.level}`);
}

function drawIncident(key, incident) {
  if (!incident) return put("incident", layers.incidents, key, null);
  const at = latlng(incident.location);
  if (!at) return;
  const marker = L.circleMarker(at, { className: `incident grade-${grade(incident)}`, radius: 11,
    color: "#111", weight: 3, fillColor: "#fff", fillOpacity: 0.9 });
  // Declared incidents keep their label on the map; one only warned of shows it on hover
  // (a storm's hundreds of warned cells would bury the map in labels).
  marker.bindTooltip(`${grade(incident)} · ${words(incident.hazard, "")} · ${state(incident)}`,
    { permanent: incident.state !== "INCIDENT_STATE_WARNING", direction: "right",
      className: "incident-label" });
  marker.on("click", () => select(key));
  put("incident", layers.incidents, key, marker);
  seen(`incident:${key}`);
}

function drawUnit(key, unit) {
  const at = unit && (latlng(unit.position) || latlng(unit.home));
  if (!unit || !at) {
    serve(key, undefined);
    put("unit", layers.units, key, null);
    return put("line", layers.lines, key, null);
  }
  const colour = UNIT_COLOURS[unit.status] || "#444";
  const marker = drawn.unit.get(key);
  if (marker && marker.options.color === colour) {
    marker.setLatLng(at);
  } else {
    put("unit", layers.units, key, L.circleMarker(at, { renderer: fleetCanvas, radius: 5,
      color: colour, fillColor: colour, fillOpacity: 0.9, weight: 1 })
      .bindTooltip(`${unit.id} (${words(unit.kind, "")}, ${unitStatus(unit.status)})`));
  }
  serve(key, unit.incident_id);
  const incident = unit.incident_id && live.things.incident?.get(unit.incident_id);
  const target = incident && latlng(incident.location);
  put("line", layers.lines, key, target
    ? L.polyline([at, target], { renderer: fleetCanvas, color: colour, weight: 2, dashArray: "4 4" })
    : null);
  seen(`unit:${key}:${unit.status}`);
}

function drawRoad(key, road) {
  const base = roadLines.get(key);
  put("road", layers.closed, key, road && road.closed && base
    ? L.polyline(base.line, { className: "road-closed", color: "#d7191c", weight: 6, dashArray: "8 6" })
      .bindTooltip(`${base.name}: closed${road.reason ? ` (${road.reason})` : ""}`)
    : null);
}

function drawDepot(key, depot) {
  const at = depot && latlng(depot.position);
  const stock = (depot?.stock ?? []).map((s) => `${s.material?.name ?? s.name}: ${s.material?.quantity ?? s.quantity ?? 0}`);
  put("depot", layers.depots, key, at
    ? L.circleMarker(at, { className: "depot", radius: 7, color: "#5d4037", fillColor: "#a1887f", fillOpacity: 1 })
      .bindTooltip(`${depot.name || depot.id}${stock.length ? `<br>${stock.join("<br>")}` : ""}`)
    : null);
}

function drawCoverage(key, coverage) {
  const at = coverage && latlng(coverage.at);
  if (!at || !coverage.gap) return put("coverage", layers.coverage, key, null);
  const group = L.layerGroup([L.circle(at, { className: "coverage-gap", radius: 600, color: "#d7191c",
    dashArray: "6 6", fill: false }).bindTooltip(
    `${coverage.name}: ${coverage.covering ?? 0} of ${coverage.minimum} ${words(coverage.unit_kind, "")} within reach`)]);
  const move = coverage.move_up;
  if (move && move.status === "MOVE_UP_STATUS_SUGGESTED" && latlng(move.from) && latlng(move.to)) {
    group.addLayer(L.polyline([latlng(move.from), latlng(move.to)], { className: "move-up",
      color: "#7b4fd6", dashArray: "2 6", weight: 3 }).bindTooltip(`move-up suggested: ${move.unit_id}`));
  }
  put("coverage", layers.coverage, key, group);
}

const DRAW = { warning: drawWarning, incident: drawIncident, unit: drawUnit, road: drawRoad,
  depot: drawDepot, coverage: drawCoverage };

// ---- the panels ----

function overdueFor(order, now) {
  if (!order.overdue?.length || ENDED_ORDERS.has(order.status)) return null;
  const due = order.overdue.includes("DEADLINE_COMPLETE") ? order.complete_by : order.acknowledge_by;
  return due ? Math.max(0, now - Date.parse(due)) : 0;
}

function boardOrder(a, b) {
  const phase = (i) => ACTIVE_PHASES.indexOf(i.state);
  const rank = (i) => ({ GRADE_I: 1, GRADE_II: 2, GRADE_III: 3, GRADE_IV: 4 }[i.grade] ?? 5);
  return phase(a) - phase(b) || rank(a) - rank(b) || (a.opened_at ?? "").localeCompare(b.opened_at ?? "");
}

function renderBoard(incidents) {
  const body = document.querySelector("#board tbody");
  const now = fieldNow();
  const rows = [...incidents].sort(boardOrder).map((incident) => {
    const open = (incident.orders ?? []).filter((o) => !ENDED_ORDERS.has(o.status));
    const late = open.map((o) => overdueFor(o, now)).filter((ms) => ms !== null);
    const units = (incident.units ?? []).filter((u) => !u.released).length;
    return el("tr", { class: `${incident.id === selected ? "selected" : ""} grade-${grade(incident)}`,
      "data-incident": incident.id, on: { click: () => select(incident.id) } },
    el("td", { class: "grade" }, grade(incident)),
    el("td", {}, el("strong", {}, incident.id), el("br"), words(incident.hazard, ""), " ",
      el("small", {}, incident.description ?? "")),
    el("td", {}, state(incident)),
    el("td", {}, String(units)),
    el("td", { class: late.length ? "overdue" : "" }, `${open.length} open`,
      late.length ? el("br") : null,
      late.length ? `${late.length} overdue, ${minutes(Math.max(...late))}` : null));
  });
  body.replaceChildren(...rows);
  document.getElementById("incident-count").textContent = `(${rows.length})`;
}

function renderWarnings(warnings) {
  const order = { WARNING_LEVEL_RED: 0, WARNING_LEVEL_ORANGE: 1, WARNING_LEVEL_YELLOW: 2, WARNING_LEVEL_BLUE: 3 };
  const items = [...warnings].sort((a, b) => (order[a.level] ?? 9) - (order[b.level] ?? 9))
    .slice(0, 300).map((w) => el("li", { class: `warning ${level(w.level)}`, "data-warning": w.id },
      el("span", { class: "chip" }, level(w.level)), " ",
      el("strong", {}, words(w.hazard, "")), " ",
      w.responsible?.cell_name || w.grid_cell, " ",
      el("small", {}, `raised ${clock(w.raised_at)}, ${words(w.status, "WARNING_STATUS_")}`),
      w.status === "WARNING_STATUS_ACTIVE" && may("acknowledge-warning")
        ? el("button", { type: "button", on: { click: () => perform("acknowledge-warning", { id: w.id }) } },
          "Acknowledge") : null));
  document.getElementById("warnings").replaceChildren(...items);
  document.getElementById("warning-count").textContent = `(${warnings.length})`;
}

async function perform(action, body, button) {
  try {
    if (button) button.disabled = true;
    await act(action, { ...body });
    notice(`${words(action, "")}: done`);
  } catch (problem) {
    notice(problem.message, true);
  } finally {
    if (button) button.disabled = false;
  }
}

function notice(text, bad = false) {
  const line = el("div", { class: `notice ${bad ? "bad" : ""}`, role: bad ? "alert" : "status" }, text);
  document.body.append(line);
  setTimeout(() => line.remove(), bad ? 8000 : 3000);
}

function orderButtons(incident, order) {
  const step = (action, label) => may(action)
    ? el("button", { type: "button", on: { click: (event) => perform(action,
      { incident_id: incident.id, order_id: order.id },
      event.target) } }, label)
    : null;
  if (order.status === "ORDER_STATUS_ISSUED") return step("acknowledge-order", "Acknowledge");
  if (["ORDER_STATUS_ACKNOWLEDGED", "ORDER_STATUS_IN_PROGRESS"].includes(order.status)) {
    return step("complete-order", "Complete");
  }
  if (order.status === "ORDER_STATUS_COMPLETED") return step("verify-order", "Verify");
  return null;
}

async function renderDetail() {
  const panel = document.getElementById("detail");
  const incident = selected && live.things.incident?.get(selected);
  if (!incident) { panel.hidden = true; return; }
  panel.hidden = false;
  const now = fieldNow();
  const stepButton = (action, label, extra = {}) => may(action) && incident.state === "INCIDENT_STATE_WARNING"
    ? el("button", { type: "button", on: { click: (event) => perform(action,
      { incident_id: incident.id, ...extra, action: { reason: "from the console" } }, event.target) } }, label)
    : null;
  panel.replaceChildren(
    el("h2", {}, `${grade(incident)} · ${incident.id}`),
    el("p", {}, `${words(incident.hazard, "")} — ${state(incident)}`,
      incident.commander ? `, commander ${incident.commander}` : "",
      incident.plan?.plan_id ? `, plan ${incident.plan.plan_id} v${incident.plan.plan_version}` : ""),
    el("p", { class: "actions" },
      stepButton("declare-incident", "Declare grade III",
        { category: "CATEGORY_ACCIDENT_DISASTER", hazard_type: incident.hazard, grade: "GRADE_III" }),
      stepButton("dismiss-incident", "Dismiss")),
    el("h3", {}, "Orders"),
    el("ul", { class: "orders", "aria-label": "Orders" }, (incident.orders ?? []).map((order) => {
      const late = overdueFor(order, now);
      return el("li", { class: late !== null ? "overdue" : "", "data-order": order.id },
        el("strong", {}, order.department), ` ${order.instruction} — `,
        words(order.status, "ORDER_STATUS_"),
        late !== null ? el("span", { class: "late" }, ` overdue ${minutes(late)}`) : null, " ",
        orderButtons(incident, order));
    })),
    el("h3", {}, "Units"),
    el("ul", { class: "units" }, (incident.units ?? []).map((unit) => el("li", {},
      `${unit.unit_id} (${words(unit.unit_kind, "")}) — ${unit.released ? "released" : unitStatus(unit.status)}`))),
    el("h3", {}, "Timeline"),
    el("ol", { id: "timeline", class: "timeline" }, el("li", {}, "loading…")));
  renderTimeline(incident);
}

// The incident's history as review holds it; review follows dispatch a moment behind, so
// the timeline asks again until it holds as many events as the incident has.
async function renderTimeline(incident, tries = 10) {
  let entries;
  try {
    const history = await getJSON(`/api/incidents/${encodeURIComponent(incident.id)}/history`);
    entries = history.map((event) => Object.entries(event)[0]).filter(([, body]) => body.meta);
  } catch (problem) {
    document.getElementById("timeline")?.replaceChildren(el("li", {}, `timeline unavailable: ${problem.message}`));
    return;
  }
  if (selected !== incident.id) return;
  document.getElementById("timeline")?.replaceChildren(...entries.map(([type, { meta }]) => el("li", {},
    `${clock(meta.occurred_at)} ${words(type, "")}`,
    meta.actor ? ` — ${meta.actor}${meta.via ? ` via ${meta.via}` : ""}` : "")));
  if (entries.length < Number(incident.version ?? 0) && tries > 0) {
    setTimeout(() => { if (selected === incident.id) renderTimeline(incident, tries - 1); }, 500);
  }
}

function select(key) {
  selected = key;
  schedule("board", "detail");
}

// What a frame redraws: only the panels whose things changed (a moving unit redraws no
// panel, so a fleet on the move leaves the board alone).
const dirty = new Set();
let pending = null;
function schedule(...panels) {
  for (const panel of panels) dirty.add(panel);
  if (pending || !dirty.size) return;
  pending = requestAnimationFrame(() => {
    pending = null;
    if (dirty.has("board") && !travelling) renderBoard([...(live.things.incident?.values() ?? [])]);
    if (dirty.has("warnings")) renderWarnings([...(live.things.warning?.values() ?? [])]);
    if (dirty.has("detail") && !travelling) renderDetail();
    if (dirty.has("feeds")) renderFeeds();
    dirty.clear();
  });
}

const PANELS = { incident: ["board"], warning: ["warnings"], feed: ["feeds"] };

function renderFeeds() {
  const feeds = [...(live.things.feed?.values() ?? [])];
  document.getElementById("feeds").replaceChildren(...feeds.map((f) => el("span",
    { class: `feed ${f.state}`, title: f.detail || f.state }, `${f.service} ${f.state}`)));
}

function redrawAll(things) {
  for (const [kind, draw] of Object.entries(DRAW)) {
    for (const [key] of drawn[kind]) if (!things[kind]?.has(key)) draw(key, null);
    for (const [key, doc] of things[kind] ?? []) draw(key, doc);
  }
  schedule("board", "warnings", "detail", "feeds");
  // When the first whole picture was drawn (ms after the page began loading): what a
  // person waits after opening the console, as bench/console.py reads it.
  requestAnimationFrame(() => { window.lifelineFirstPicture ??= performance.now(); });
}

// ---- time travel ----

const travel = document.getElementById("travel");
const asOf = document.getElementById("as-of");
const slider = document.getElementById("slider");
const play = document.getElementById("play");
const speed = document.getElementById("speed");
let sliderStart = 0;
let playing = null;

function localInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function showCityAt(ms) {
  asOf.value = localInput(ms);
  slider.value = String(Math.round((ms - sliderStart) / 60000));
  document.getElementById("as-of-label").textContent = `as of ${new Date(ms).toLocaleString()}`;
  let city;
  try {
    city = await getJSON(`/api/city?as_of=${encodeURIComponent(new Date(ms).toISOString())}`);
  } catch (problem) {
    notice(problem.message, true);
    return;
  }
  layers.past.clearLayers();
  const incidents = city.active_incidents ?? [];
  for (const incident of incidents) {
    const at = latlng(incident.location);
    const colour = LEVEL_COLOURS[incident.warning_level];
    const outline = incident.grid_cell ? cellOutline(incident.grid_cell) : null;
    if (colour && outline) {
      L.polygon(outline, { className: `warning-cell past ${level(incident.warning_level)}`, color: colour,
        fillColor: colour, fillOpacity: 0.45, weight: 2 }).addTo(layers.past);
    }
    if (at) {
      L.circleMarker(at, { className: `incident past grade-${grade(incident)}`, radius: 11, color: "#111",
        weight: 3, fillColor: "#fff", fillOpacity: 0.9 })
        .bindTooltip(`${grade(incident)} · ${words(incident.hazard, "")} · ${state(incident)}`,
          { permanent: true, direction: "right" }).addTo(layers.past);
    }
  }
  for (const unit of city.committed_units ?? []) {
    const incident = incidents.find((i) => i.id === unit.incident_id);
    const at = incident && latlng(incident.location);
    if (at) {
      const colour = UNIT_COLOURS[unit.status] || "#444";
      L.circleMarker(at, { radius: 5, color: colour, fillColor: colour, fillOpacity: 0.9 })
        .bindTooltip(`${unit.unit_id} (${unitStatus(unit.status)})`).addTo(layers.past);
    }
  }
  renderBoard(incidents);
}

// Cells' outlines come with the live warnings and the base map; a past incident's cell is
// found there (the grid does not move).
function cellOutline(cell) {
  for (const w of live.things.warning?.values() ?? []) if (w.grid_cell === cell) return w.outline;
  return baseCells.get(cell) ?? null;
}
const baseCells = new Map();

function setTravel(on) {
  travelling = on;
  for (const control of [asOf, slider, play, speed]) control.disabled = !on;
  const liveGroups = ["warnings", "closed", "coverage", "depots", "lines", "units", "incidents"];
  for (const name of liveGroups) (on ? map.removeLayer(layers[name]) : map.addLayer(layers[name]));
  if (on) {
    map.addLayer(layers.past);
    const end = fieldNow();
    sliderStart = end - 24 * 3600 * 1000;
    slider.max = String(24 * 60);
    showCityAt(end);
  } else {
    stopPlaying();
    map.removeLayer(layers.past);
    document.getElementById("as-of-label").textContent = "";
    schedule("board", "detail");
  }
}

function stopPlaying() {
  clearInterval(playing);
  playing = null;
  play.textContent = "▶ Play";
}

travel.addEventListener("change", () => setTravel(travel.checked));
asOf.addEventListener("change", () => { if (asOf.value) showCityAt(new Date(asOf.value).getTime()); });
slider.addEventListener("input", () => showCityAt(sliderStart + Number(slider.value) * 60000));
play.addEventListener("click", () => {
  if (playing) return stopPlaying();
  play.textContent = "❚❚ Pause";
  const tick = 500;
  playing = setInterval(() => {
    const next = new Date(asOf.value).getTime() + Number(speed.value) * tick;
    if (next > fieldNow()) return stopPlaying();
    showCityAt(next);
  }, tick);
});

// ---- start ----

async function start() {
  // The base map is asked for beside who is signed in, not after.
  const basemap = getJSON("/api/basemap");
  basemap.catch(() => {});  // signed out: signedIn() takes the person to the sign-in page
  const who = await signedIn();
  if (!who) return;
  document.getElementById("who").textContent =
    `${who.name} — ${who.roles.join(", ")}${who.department ? ` (${who.department})` : ""}`;
  document.getElementById("signout").addEventListener("click", async () => {
    await fetch("/api/signout", { method: "POST", headers: { "X-CSRF-Token": who.csrf } });
    location.assign("/signin");
  });
  const base = await basemap;
  for (const cell of base.cells) baseCells.set(cell.cell, cell.outline);
  drawBase(base);
  live = new LivePicture({
    onSnapshot: redrawAll,
    onChanges: (changes) => {
      for (const change of changes) {
        DRAW[change.kind]?.(change.key, change.doc);
        schedule(...(PANELS[change.kind] ?? []));
        if (change.kind === "incident" && change.key === selected) schedule("detail");
        if (change.kind === "incident" && change.doc) {
          for (const unit of serving.get(change.key) ?? []) {
            drawUnit(unit, live.things.unit?.get(unit));
          }
        }
      }
    },
    onConnection: (up) => {
      document.getElementById("lost").hidden = up;
      const badge = document.getElementById("connection");
      badge.textContent = up ? "live" : "reconnecting…";
      badge.className = `connection ${up ? "up" : "down"}`;
    },
  });
  window.lifelinePicture = live;
}

start();
