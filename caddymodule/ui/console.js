// mxgate operator console. It polls GET /mxgate/status, keeps the last
// minutes of per-class rates in memory (the status has totals only) and
// changes toggles through the admin API the CLI uses: POST /mxgate/shed and
// DELETE /mxgate/shed/{class}. Everything is drawn with DOM text nodes, never
// innerHTML: reasons and room IDs come from operators and clients.
"use strict";

const POLL_MS = 2000;
const HISTORY_MS = 5 * 60 * 1000; // the charts' span
const STALE_MS = 3 * POLL_MS;

// history: "zone/class" -> [{t, admitted, refused, would}] rates per second.
const history = new Map();
// last: "zone/class" -> {t, admitted, refused, would} totals at the last poll.
const last = new Map();
let lastOK = 0;
let timer = 0;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function fmtRate(r) {
  if (!isFinite(r)) return "–";
  if (r === 0) return "0";
  if (r < 10) return r.toFixed(1);
  return Math.round(r).toString();
}

function fmtAgo(iso, now) {
  if (!iso) return "–";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s ago";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m ago";
}

function fmtLeft(iso, now) {
  const s = Math.max(0, Math.round((Date.parse(iso) - now) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

// totals sums a class's counters into what the charts show.
function totals(c) {
  const k = c.counters || {};
  let would = 0;
  for (const [name, v] of Object.entries(k)) if (name.startsWith("would_")) would += v;
  return { admitted: k.admitted || 0, refused: (k.shed || 0) + (k.rate_limited || 0) + (k.timeout || 0), would };
}

// record turns this poll's totals into rates and appends them to history.
function record(zone, classes, t) {
  for (const c of classes) {
    const key = zone + "/" + c.class;
    const now = totals(c);
    const prev = last.get(key);
    const dt = prev ? (t - prev.t) / 1000 : 0;
    if (prev && dt < 0.5) continue; // a poll right after another: rates would be noise
    last.set(key, { t, ...now });
    if (!prev) continue;
    // A config reload builds a new gate whose totals start at zero.
    const rate = (a, b) => (a >= b ? (a - b) / dt : a / dt);
    const h = history.get(key) || [];
    h.push({ t, admitted: rate(now.admitted, prev.admitted), refused: rate(now.refused, prev.refused),
             would: rate(now.would, prev.would) });
    while (h.length && h[0].t < t - HISTORY_MS) h.shift();
    history.set(key, h);
  }
}

function latest(key) {
  const h = history.get(key);
  return h && h.length ? h[h.length - 1] : null;
}

// spark draws the last minutes of a class's rates as an inline SVG chart.
function spark(key, showWould, t) {
  const h = history.get(key) || [];
  const W = 200, H = 40;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "spark",
                         role: "img" });
  let max = 1;
  for (const p of h) max = Math.max(max, p.admitted, p.refused, showWould ? p.would : 0);
  // The span grows with the history, from one minute up to HISTORY_MS.
  const span = Math.min(HISTORY_MS, Math.max(60000, h.length ? t - h[0].t : 0));
  const x = (p) => W - ((t - p.t) / span) * W;
  const y = (v) => H - 1 - (v / max) * (H - 3);
  s.append(svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: "axis" }));
  const line = (field, cls) => {
    if (h.length < 2) return;
    s.append(svg("polyline", { class: cls, points: h.map((p) => `${x(p).toFixed(1)},${y(p[field]).toFixed(1)}`).join(" ") }));
  };
  line("admitted", "admit");
  line("refused", "refuse");
  if (showWould) line("would", "would");
  const title = svg("title", {});
  title.textContent = `last ${Math.round(span / 1000)} seconds, peak ${fmtRate(max)}/s`;
  s.prepend(title);
  return s;
}

// bar is a fill gauge; its width is set through the CSSOM, which the
// page's Content-Security-Policy allows (a style attribute it does not).
function bar(pct, full) {
  const fill = el("span", {});
  fill.style.width = pct.toFixed(0) + "%";
  return el("div", { class: "bar" + (full ? " full" : "") }, fill);
}

function modeBadge(mode) {
  const cls = mode === "shed" ? "bad" : mode === "queue" ? "warn" : "ok";
  return el("span", { class: "badge " + cls }, mode);
}

function classCard(zone, c, toggles, t) {
  const key = zone + "/" + c.class;
  const r = latest(key);
  const shadow = !!c.shadow;
  const showWould = shadow || totals(c).would > 0;
  const cap = c.cap || 0;
  const pct = cap > 0 ? Math.min(100, (100 * c.inflight) / cap) : 0;
  const own = toggles.find((tg) => tg.class === c.class);
  return el("article", { class: "class " + c.mode, "data-class": c.class, "aria-label": "class " + c.class },
    el("header", {},
      el("h3", {}, c.class),
      shadow ? el("span", { class: "badge muted", title: "automatic limits only observe" }, "shadow") : null,
      modeBadge(c.mode)),
    el("dl", {},
      el("dt", {}, "priority"),
      el("dd", { "data-field": "priority" }, c.priority),
      el("dt", {}, "in flight"),
      el("dd", { "data-field": "inflight" }, c.inflight + " / " + (cap > 0 ? cap : "no cap"),
        cap > 0 ? bar(pct, c.inflight >= cap) : null),
      el("dt", {}, "queued"),
      el("dd", { "data-field": "queued" }, c.queued + (c.limits && c.limits.queue ? " / " + c.limits.queue : "")),
      shadow ? el("dt", {}, "would queue") : null,
      shadow ? el("dd", { "data-field": "shadow_queued" }, c.shadow_queued || 0) : null,
      el("dt", {}, "admitted/s"),
      el("dd", { "data-field": "admitted" }, r ? fmtRate(r.admitted) : "–"),
      el("dt", {}, "refused/s"),
      el("dd", { "data-field": "refused" }, r ? fmtRate(r.refused) : "–"),
      showWould ? el("dt", {}, "would refuse/s") : null,
      showWould ? el("dd", { "data-field": "would" }, r ? fmtRate(r.would) : "–") : null),
    c.mode !== "normal" && c.reason ? el("p", { class: "reason" }, c.reason) : null,
    spark(key, showWould, t),
    el("div", { class: "legend", "aria-hidden": "true" },
      el("span", { class: "a" }, "— admitted"), el("span", { class: "r" }, "— refused"),
      showWould ? el("span", { class: "w" }, "- - would refuse") : null),
    el("div", { class: "actions" },
      el("button", { type: "button", "data-key": `act/${key}`, "aria-label": "shed or queue " + c.class + "…",
                     onclick: () => prefill(c.class, zone) }, "Shed…"),
      own ? el("button", { type: "button", class: "danger", "data-key": `restore/${key}`,
                           "aria-label": "restore " + c.class, onclick: () => restore(c.class, "", zone) }, "Restore") : null));
}

function table(caption, cols, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  return el("div", { class: "tablewrap" },
    el("table", {},
      el("caption", { class: "skip" }, caption),
      el("thead", {}, el("tr", {}, cols.map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, v)))))));
}

function toggleTarget(tg) {
  return tg.class === "*" ? "every class ≤ " + tg.priority : tg.class;
}

function upstreamSummary(z) {
  const u = z.upstream || {};
  const rt = z.ride_through || {};
  const es = z.error_shed || {};
  let state = "unknown", cls = "muted";
  if (u.reachable === true) { state = "reachable"; cls = "ok"; }
  if (u.reachable === false || rt.down) { state = "down"; cls = "bad"; }
  if (state === "reachable" && u.responses_last_minute >= 10 && u.error_ratio_last_minute >= 0.1) {
    state = "degraded"; cls = "warn";
  }
  return el("div", { class: "summary", "data-field": "upstream" },
    el("span", {}, "upstream ", el("span", { class: "badge " + cls }, state)),
    el("span", {}, "answers last minute ", el("b", {}, u.responses_last_minute ?? 0)),
    el("span", {}, "failing ", el("b", {}, ((u.error_ratio_last_minute || 0) * 100).toFixed(1) + "%")),
    rt.slow_start ? el("span", { class: "badge warn" }, "slow start") : null,
    es.shedding ? el("span", { class: "badge bad" }, "error shedding") : null);
}

// generic renders a value of unknown shape (the fleet section) as a table
// of its fields: a list of objects becomes rows, an object one row.
function generic(v) {
  if (Array.isArray(v)) {
    const cols = [...new Set(v.flatMap((o) => (o && typeof o === "object" ? Object.keys(o) : [])))];
    if (!cols.length) return el("p", {}, v.join(", "));
    return table("fleet", cols, v.map((o) => cols.map((c) => scalar(o[c]))), "none");
  }
  if (v && typeof v === "object") {
    const scalars = Object.entries(v).filter(([, x]) => !Array.isArray(x));
    const lists = Object.entries(v).filter(([, x]) => Array.isArray(x));
    return el("div", {},
      scalars.length ? el("div", { class: "summary" }, scalars.map(([k, x]) => el("span", {}, k + " ", el("b", {}, scalar(x))))) : null,
      lists.map(([k, x]) => el("div", {}, el("h3", {}, k), generic(x))));
  }
  return el("p", {}, scalar(v));
}

function scalar(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "object") return JSON.stringify(x);
  return String(x);
}

function zoneSection(z, fleet, t) {
  const toggles = z.toggles || [];
  const g = z.global || {};
  return el("section", { class: "zone", "data-zone": z.zone, "aria-label": "zone " + z.zone },
    el("h2", {}, "Zone " + z.zone),
    el("div", { class: "summary" },
      el("span", {}, "in flight ", el("b", {}, g.inflight + (g.max_inflight ? " / " + g.max_inflight : ""))),
      el("span", {}, "queued ", el("b", {}, g.queued)),
      z.shadow ? el("span", { class: "badge muted" }, "shadow mode: automatic limits only observe") : null),
    upstreamSummary(z),
    el("div", { class: "classes" }, (z.classes || []).map((c) => classCard(z.zone, c, toggles, t))),
    el("h2", {}, "Toggles"),
    table("active toggles", ["target", "mode", "reason", "ends in", ""],
      toggles.map((tg) => [toggleTarget(tg), tg.mode, tg.reason, fmtLeft(tg.until, t),
        el("button", { type: "button", class: "danger", "data-key": `untoggle/${z.zone}/${tg.class}/${tg.priority || ""}`,
                       "aria-label": "restore " + toggleTarget(tg),
                       onclick: () => restore(tg.class, tg.priority || "", z.zone) }, "Restore")]),
      "No toggle is in force."),
    el("h2", {}, "Herds"),
    table("active herds", ["class", "room", "distinct users", "since"],
      (z.herds || []).map((h) => [h.class, h.room, h.users, fmtAgo(h.since, t)]),
      "No herd is active."),
    fleet ? el("h2", {}, "Fleet") : null,
    fleet ? generic(fleet) : null);
}

function render(st, t) {
  const zones = st.zones || [];
  const box = document.getElementById("zones");
  const focusKey = document.activeElement && document.activeElement.getAttribute("data-key");
  box.replaceChildren(...zones.map((z) => zoneSection(z, z.fleet || (zones.length === 1 ? st.fleet : null), t)));
  if (zones.length > 1 && st.fleet) box.append(el("h2", {}, "Fleet"), generic(st.fleet));
  if (focusKey) {
    const again = box.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
  syncOptions(document.getElementById("f-class"), zones.length ? zones[0].classes.map((c) => c.class) : []);
  syncOptions(document.getElementById("f-zone"), [""].concat(zones.map((z) => z.zone)), { "": "every zone" });
}

// syncOptions sets a select's options to values, keeping the selection.
function syncOptions(sel, values, labels) {
  const have = [...sel.options].map((o) => o.value);
  if (have.length === values.length && have.every((v, i) => v === values[i])) return;
  const keep = sel.value;
  sel.replaceChildren(...values.map((v) => el("option", { value: v }, (labels && labels[v]) || v)));
  if (values.includes(keep)) sel.value = keep;
}

async function poll() {
  clearTimeout(timer);
  const conn = document.getElementById("conn");
  try {
    const resp = await fetch("/mxgate/status", { cache: "no-store", headers: { Accept: "application/json" } });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || resp.statusText);
    const t = Date.now();
    for (const z of body.zones || []) record(z.zone, z.classes || [], t);
    render(body, t);
    lastOK = t;
    conn.textContent = "live · updated " + new Date(t).toLocaleTimeString();
    conn.className = "";
  } catch (e) {
    conn.textContent = (lastOK && Date.now() - lastOK > STALE_MS ? "STALE · " : "") + "status failed: " + e.message;
    conn.className = "stale";
  }
  clearTimeout(timer); // a poll started by a control may have finished meanwhile: keep one loop
  timer = setTimeout(poll, POLL_MS);
}

function showResult(msg, ok) {
  const r = document.getElementById("result");
  r.textContent = msg;
  r.className = ok ? "done" : "error";
}

async function call(method, url, body) {
  const resp = await fetch(url, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = {};
  try { data = await resp.json(); } catch (_) { /* an empty or non-JSON error */ }
  if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
  return data;
}

function formTarget() {
  const byPriority = document.querySelector('input[name="target"]:checked').value === "priority";
  return byPriority
    ? { class: "*", priority: document.getElementById("f-priority").value }
    : { class: document.getElementById("f-class").value };
}

async function apply(ev) {
  ev.preventDefault();
  const req = { ...formTarget(), mode: document.getElementById("f-mode").value,
                for: document.getElementById("f-for").value.trim(),
                reason: document.getElementById("f-reason").value.trim() };
  const zone = document.getElementById("f-zone").value;
  if (zone) req.zone = zone;
  try {
    const data = await call("POST", "/mxgate/shed", req);
    const tg = data.toggle;
    showResult(`${toggleTarget(tg)}: ${tg.mode} for ${tg.remaining} — ${tg.reason}` + (data.warning ? ` (warning: ${data.warning})` : ""), true);
  } catch (e) {
    showResult("Not applied: " + e.message, false);
  }
  poll();
}

async function restore(cls, priority, zone) {
  const q = new URLSearchParams();
  if (priority) q.set("priority", priority);
  if (zone) q.set("zone", zone);
  const url = "/mxgate/shed/" + encodeURIComponent(cls) + (q.toString() ? "?" + q : ""); // "*" stays as is
  try {
    const data = await call("DELETE", url);
    const what = cls === "*" ? "every class ≤ " + priority : cls;
    showResult((data.removed && data.removed.length ? `${what} restored` : `${what} had no toggle`) +
               (data.warning ? ` (warning: ${data.warning})` : ""), true);
  } catch (e) {
    showResult("Not restored: " + e.message, false);
  }
  poll();
}

// prefill points the form at a class and moves focus there, so a shed is
// two keystrokes from a class card.
function prefill(cls, zone) {
  document.querySelector('input[name="target"][value="class"]').checked = true;
  syncTargetFields();
  document.getElementById("f-class").value = cls;
  document.getElementById("f-zone").value = document.querySelectorAll(".zone").length > 1 ? zone : "";
  document.getElementById("f-for").focus();
  document.getElementById("f-for").select();
}

function syncTargetFields() {
  const byPriority = document.querySelector('input[name="target"]:checked').value === "priority";
  document.getElementById("f-class").disabled = byPriority;
  document.getElementById("f-priority").disabled = !byPriority;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("shed-form").addEventListener("submit", apply);
  document.getElementById("restore-target").addEventListener("click", () => {
    const tg = formTarget();
    restore(tg.class, tg.priority || "", document.getElementById("f-zone").value);
  });
  for (const r of document.querySelectorAll('input[name="target"]')) r.addEventListener("change", syncTargetFields);
  syncTargetFields();
  poll();
});
