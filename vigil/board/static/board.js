// Vigil alert board: renders the snapshots the service pushes over Server-Sent Events.
// No framework and no CDN (the ward network may be offline). Every value from the server is
// put in the page with textContent, never as HTML.
"use strict";

const SEVERITY = { high: "▲ HIGH", medium: "◆ MEDIUM", low: "● LOW" };
// each alert kind's name for people comes with every snapshot (the server's kinds registry)
let KIND = {};
const TRANSITION = { raised: "Raised", escalated: "Escalated", acknowledged: "Acknowledged",
                     resolved: "Resolved" };
const STALE_AFTER_MS = 15000;  // the service sends a ping every 5 s: 3 missed = stale

const pending = new Map();     // alert_id -> true while our ack is on its way
const ackErrors = new Map();   // alert_id -> message of a refused ack
let last = null;               // the last snapshot
let me = null;                 // {identity: {name, role, units, method}, csrf}
let lastMessageAt = 0;
let unitFilter = decodeURIComponent((location.hash.match(/unit=([^&]*)/) || [])[1] || "");

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function hhmm(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

function sparkline(trend, threshold) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const vals = trend.length ? trend : [0];
  const top = Math.max(threshold, ...vals) * 1.15 || 1;
  const y = (v) => (28 - (Math.max(0, v) / top) * 26).toFixed(2);
  const x = (i) => (vals.length === 1 ? 98 : 2 + (i / (vals.length - 1)) * 96).toFixed(2);
  const label = `Risk trend ${vals.map((v) => v.toFixed(2)).join(" → ")}, alert level ${threshold.toFixed(2)}`;
  svg.setAttribute("aria-label", label);
  const title = document.createElementNS(NS, "title");
  title.textContent = label;
  svg.appendChild(title);
  const thr = document.createElementNS(NS, "line");
  thr.setAttribute("class", "spark-threshold");
  thr.setAttribute("x1", "0"); thr.setAttribute("x2", "100");
  thr.setAttribute("y1", y(threshold)); thr.setAttribute("y2", y(threshold));
  svg.appendChild(thr);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("class", "spark-line");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  line.setAttribute("points", vals.map((v, i) => `${x(i)},${y(v)}`).join(" "));
  svg.appendChild(line);
  const dot = document.createElementNS(NS, "circle");
  dot.setAttribute("class", "spark-dot");
  dot.setAttribute("cx", x(vals.length - 1)); dot.setAttribute("cy", y(vals[vals.length - 1]));
  dot.setAttribute("r", "2.2");
  svg.appendChild(dot);
  return svg;
}

function statusText(a, sent) {
  if (a.status === "resolved") return `RESOLVED · ${hhmm(a.event_time)}`;
  if (a.status === "acknowledged") {
    const who = a.acknowledged_by ? ` by ${a.acknowledged_by}` : "";
    return `ACKNOWLEDGED${who} · ${hhmm(a.acknowledged_at)}`;
  }
  if (sent) return "ACK SENT…";
  return a.status === "escalated" ? "ESCALATED · NOT ACKNOWLEDGED" : "NOT ACKNOWLEDGED";
}

function card(a, resolved) {
  const sent = a.status !== "acknowledged" && (a.ack_sent || pending.has(a.alert_id));
  const li = el("li", `alert sev-${a.severity} st-${a.status}${sent ? " st-ack-sent" : ""}`);
  li.dataset.alertId = a.alert_id;
  li.dataset.status = sent ? "ack-sent" : a.status;
  li.dataset.unit = a.unit || "";

  const sev = el("div", "sevcol");
  sev.appendChild(el("span", "sev", SEVERITY[a.severity] || a.severity.toUpperCase()));
  sev.appendChild(el("span", "kind", KIND[a.kind] || a.kind));
  li.appendChild(sev);

  const body = el("div", "body");
  const who = el("div", "who", a.bed ? `Bed ${a.bed}` : "Bed ?");
  if (a.unit) who.appendChild(el("span", "unit", a.unit));
  who.appendChild(el("span", "patient", a.patient));
  body.appendChild(who);
  body.appendChild(el("div", "summary", a.summary));
  if (a.reasons.length) {
    const ul = el("ul", "reasons");
    ul.setAttribute("aria-label", "Reasons");
    a.reasons.forEach((r) => ul.appendChild(el("li", null, r)));
    body.appendChild(ul);
  }
  const why = [`${TRANSITION[a.transition] || a.transition} ${hhmm(a.event_time)}`];
  if (a.transition_reason) why.push(a.transition_reason);
  if (a.episode_start && hhmm(a.episode_start) !== hhmm(a.event_time)) {
    why.push(`episode since ${hhmm(a.episode_start)}`);
  }
  body.appendChild(el("div", "why", why.join(" · ")));
  li.appendChild(body);

  const trend = el("div", "trend");
  trend.appendChild(sparkline(a.trend, a.threshold));
  trend.appendChild(el("div", "risk", `risk ${a.risk.toFixed(2)} · alert ≥ ${a.threshold.toFixed(2)}`));
  li.appendChild(trend);

  const act = el("div", "act");
  act.appendChild(el("div", "status", statusText(a, sent)));
  if (!resolved && a.status !== "acknowledged" && me && me.identity.role === "nurse") {
    const btn = el("button", "ack-btn", sent ? "Ack sent" : "Acknowledge");
    btn.type = "button";
    btn.disabled = !!sent;
    btn.setAttribute("aria-label", `Acknowledge ${KIND[a.kind] || a.kind} alert, bed ${a.bed || "?"}`);
    btn.addEventListener("click", () => acknowledge(a.alert_id));
    act.appendChild(btn);
  }
  if (ackErrors.has(a.alert_id)) act.appendChild(el("div", "ack-error", ackErrors.get(a.alert_id)));
  li.appendChild(act);
  return li;
}

// Keyed update: a card is rebuilt only when what it shows changed, so a button under the
// nurse's finger is not swapped out by an unrelated update.
function renderList(list, alerts, resolved) {
  const old = new Map([...list.children].map((c) => [c.dataset.alertId, c]));
  const want = alerts.map((a) => {
    const sig = JSON.stringify([a, pending.has(a.alert_id), ackErrors.get(a.alert_id) || ""]);
    const prev = old.get(a.alert_id);
    if (prev && prev.dataset.sig === sig) return prev;
    const c = card(a, resolved);
    c.dataset.sig = sig;
    return c;
  });
  const keep = new Set(want);
  [...list.children].forEach((c) => { if (!keep.has(c)) c.remove(); });
  want.forEach((c, i) => { if (list.children[i] !== c) list.insertBefore(c, list.children[i] || null); });
}

function renderUnits(units, counts) {
  const nav = $("units");
  const all = ["", ...units];
  if (unitFilter && !units.includes(unitFilter)) all.push(unitFilter);
  const sig = JSON.stringify([all, counts, unitFilter]);
  if (nav.dataset.sig === sig) return;
  nav.dataset.sig = sig;
  nav.textContent = "";
  all.forEach((u) => {
    const n = u ? (counts[u] || 0) : Object.values(counts).reduce((s, x) => s + x, 0);
    const b = el("button", null, `${u || "All units"} (${n})`);
    b.type = "button";
    b.dataset.unit = u;
    b.setAttribute("aria-pressed", String(u === unitFilter));
    b.addEventListener("click", () => {
      unitFilter = u;
      history.replaceState(null, "", u ? `#unit=${encodeURIComponent(u)}` : "#");
      render();
    });
    nav.appendChild(b);
  });
}

function render() {
  if (!last) return;
  KIND = last.kinds || KIND;
  for (const id of [...pending.keys()]) {  // drop pending marks the server has overtaken
    const a = last.active.find((x) => x.alert_id === id);
    if (!a || a.status === "acknowledged" || a.ack_sent) pending.delete(id);
  }
  const counts = {};
  last.active.forEach((a) => { if (a.unit) counts[a.unit] = (counts[a.unit] || 0) + 1; });
  renderUnits(last.units, counts);
  const pick = (xs) => (unitFilter ? xs.filter((a) => a.unit === unitFilter) : xs);
  const active = pick(last.active);
  const resolved = pick(last.resolved);
  renderList($("active"), active, false);
  renderList($("resolved"), resolved, true);
  $("n-active").textContent = `(${active.length})`;
  $("n-resolved").textContent = `(${resolved.length})`;
  $("no-active").hidden = active.length > 0;
  const bad = Object.values(last.malformed || {}).reduce((s, x) => s + x, 0);
  $("malformed").textContent = bad ? ` · ${bad} malformed record(s) skipped` : "";
}

// Signed out (session ended, account removed): go to the sign-in page, and come back to
// the same unit filter afterwards.
function toSignIn() {
  if (location.hash.startsWith("#unit=")) sessionStorage.setItem("vigil.after", location.hash);
  location.replace("/login");
}

async function loadSession() {
  const r = await fetch("/api/session", { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) { toSignIn(); return false; }
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  me = await r.json();
  const id = me.identity;
  $("me-name").textContent = `${id.name} · ${id.role} · ${id.units.join(", ").replace("*", "all units")}`;
  return true;
}

async function post(path, body) {
  return fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": me ? me.csrf : "" },
    body: JSON.stringify(body),
  });
}

async function acknowledge(alertId) {
  ackErrors.delete(alertId);
  pending.set(alertId, true);
  render();
  try {
    const r = await post("/api/ack", { alert_id: alertId });
    if (r.status === 401) { toSignIn(); return; }
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      if (r.status === 403) loadSession().catch(() => {});  // a stale CSRF token
      throw new Error(body.error || `HTTP ${r.status}`);
    }
  } catch (e) {
    pending.delete(alertId);
    ackErrors.set(alertId, `Ack not sent: ${e.message}`);
  }
  render();
}

async function signOut() {
  const r = await post("/api/logout", {}).catch(() => null);
  const body = r && r.ok ? await r.json().catch(() => ({})) : {};
  location.replace(body.next || "/login");
}

// Two ways to be out of date: this page lost the service, or the service lost Kafka.
function setConnection(ok) {
  const feed = (last && last.feed) || { ready: true };
  const live = ok && feed.ready;
  const c = $("conn");
  c.className = `conn ${live ? "conn-live" : "conn-lost"}`;
  c.textContent = !ok ? "connection lost"
    : !feed.ready ? "not reading alerts"
    : `live · ${new Date(lastMessageAt).toLocaleTimeString([], { hourCycle: "h23" })}`;
  const stale = $("stale");
  stale.textContent = !ok
    ? "Connection to the alert service lost: this board may be out of date. Reconnecting…"
    : `The alert service is not reading alerts from Kafka${feed.error ? ` (${feed.error})` : ""}: `
      + "new alerts will not show. Reconnecting…";
  stale.hidden = live;
  $("no-active").textContent = live ? "No active alerts." : "Not known while the board is not up to date.";
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("board", (e) => {
    last = JSON.parse(e.data);
    lastMessageAt = Date.now();
    setConnection(true);
    render();
  });
  es.addEventListener("ping", () => { lastMessageAt = Date.now(); setConnection(true); });
  es.addEventListener("signed-out", () => { es.close(); toSignIn(); });
  es.onerror = () => {
    setConnection(false);
    // EventSource reconnects by itself after a network error, but gives up on an HTTP
    // error (401 signed out, 429/503 too many screens): find out which, and retry
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(() => loadSession().then((ok) => { if (ok) connect(); }).catch(
        () => setTimeout(connect, 5000)), 3000);
    }
  };
}

setInterval(() => {
  if (lastMessageAt && Date.now() - lastMessageAt > STALE_AFTER_MS) setConnection(false);
}, 2000);

$("signout").addEventListener("click", signOut);
loadSession().then((ok) => { if (ok) connect(); }).catch(() => setConnection(false));
