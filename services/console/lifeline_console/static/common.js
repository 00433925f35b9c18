// What the console's pages share: calls to the console's API, the signed-in person, names
// and colours of the field.

export const LEVEL_COLOURS = {
  WARNING_LEVEL_BLUE: "#1e6fd9", WARNING_LEVEL_YELLOW: "#f2c200",
  WARNING_LEVEL_ORANGE: "#f07800", WARNING_LEVEL_RED: "#d7191c",
};
export const UNIT_COLOURS = {
  UNIT_STATUS_AVAILABLE: "#2e9d3e", UNIT_STATUS_ASSIGNED: "#7b4fd6",
  UNIT_STATUS_EN_ROUTE: "#1e6fd9", UNIT_STATUS_ON_SCENE: "#d7191c",
  UNIT_STATUS_OUT_OF_SERVICE: "#888888",
};
const GRADES = { GRADE_I: "I", GRADE_II: "II", GRADE_III: "III", GRADE_IV: "IV" };

export function words(value, prefix) {
  if (!value) return "";
  return value.replace(prefix, "").toLowerCase().replaceAll("_", " ");
}
export const grade = (incident) => GRADES[incident.grade] || "–";
export const level = (value) => words(value, "WARNING_LEVEL_");
export const state = (incident) => words(incident.state, "INCIDENT_STATE_");
export const unitStatus = (value) => words(value, "UNIT_STATUS_");

export function clock(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function minutes(ms) {
  const m = Math.round(ms / 60000);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

// The signed-in person ({name, roles, department, csrf, actions}), or null.
export let me = null;

export async function signedIn() {
  const answer = await fetch("/api/me", { credentials: "same-origin" });
  if (answer.status === 401) {
    location.assign(`/signin?next=${encodeURIComponent(location.pathname)}`);
    return null;
  }
  me = await answer.json();
  return me;
}

export async function getJSON(path) {
  const answer = await fetch(path, { credentials: "same-origin" });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.message || answer.statusText);
  return body;
}

// One action, as the signed-in person: the service's answer, or an Error with its words.
// Its idempotency key makes a repeated click or a retry count once.
export async function act(name, body, key = crypto.randomUUID()) {
  const answer = await fetch(`/api/actions/${name}`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf, "Idempotency-Key": key },
    body: JSON.stringify(body),
  });
  const reply = await answer.json();
  if (!answer.ok) throw new Error(`${reply.code}: ${reply.message}`);
  return reply;
}

export const may = (action) => Boolean(me && me.actions.includes(action));

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (key === "class") node.className = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

// The picture as the console streams it: a snapshot, then numbered changes. Reconnects by
// itself, asking only for what came after the last change it applied.
export class LivePicture {
  constructor({ onSnapshot, onChanges, onConnection }) {
    Object.assign(this, { onSnapshot, onChanges, onConnection });
    this.seq = -1;
    this.things = {};
    this.wait = 500;
    this.open();
  }

  open() {
    const after = this.seq >= 0 ? `?after=${this.seq}` : "";
    this.source = new EventSource(`/api/events${after}`);
    this.source.addEventListener("open", () => { this.wait = 500; this.onConnection(true); });
    this.source.addEventListener("snapshot", (event) => {
      const { seq, things } = JSON.parse(event.data);
      this.things = {};
      for (const [kind, docs] of Object.entries(things)) {
        this.things[kind] = new Map(docs.map((doc) => [keyOf(kind, doc), doc]));
      }
      this.seq = seq;
      this.onSnapshot(this.things);
    });
    this.source.addEventListener("changes", (event) => {
      const fresh = JSON.parse(event.data).filter((change) => change.seq > this.seq);
      for (const change of fresh) {
        const kind = (this.things[change.kind] ??= new Map());
        if (change.doc === null) kind.delete(change.key);
        else kind.set(change.key, change.doc);
        this.seq = change.seq;
      }
      if (fresh.length) this.onChanges(fresh);
    });
    this.source.addEventListener("error", () => {
      this.onConnection(false);
      this.source.close();
      setTimeout(() => this.open(), this.wait);
      this.wait = Math.min(this.wait * 2, 5000);
    });
  }
}

function keyOf(kind, doc) {
  if (kind === "coverage") return doc.requirement_id;
  if (kind === "feed") return doc.service;
  return doc.id;
}
