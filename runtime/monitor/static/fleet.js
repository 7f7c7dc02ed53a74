// edgefuse fleet page: one WebSocket (/ws?fleet=1) brings the fleet's rows, refreshed every second by the monitor.
// Each row links to that device's own page (/device/<id>). Strings from the network go in as text, never as HTML.
"use strict";

let fleet = { devices: [], endpoints: [], malformed: 0, last_error: "" };
let connected = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const $ = (sel) => document.querySelector(sel);
const fmt = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));

function draw() {
  $("#endpoint").textContent = fleet.endpoints.join(" ");
  const live = fleet.devices.filter((d) => d.live).length;
  $("#n-devices").textContent = fleet.devices.length;
  $("#n-live").textContent = live;
  const withAlerts = fleet.devices.filter((d) => d.alerts.length).length;
  $("#n-alerts").textContent = withAlerts;
  $("#alerts-box").className = "kpi" + (withAlerts ? " bad" : "");
  $("#malformed").textContent = fleet.malformed;
  $("#malformed-box").title = fleet.last_error || "";
  const pill = $("#live");
  pill.textContent = connected ? "connected" : "disconnected";
  pill.className = "pill " + (connected ? "ok" : "missing");
  if (!fleet.devices.length) return;
  $("#devices tbody").replaceChildren(...fleet.devices.map((d) => {
    const top = d.top ? Object.values(d.top).join(" · ") : "–";
    const all = d.streams.ok + d.streams.stale + d.streams.missing;
    const status = d.live ? "live" : "silent";
    return el("tr", { "data-device": d.device, class: d.alerts.length ? "alerting" : "" },
      el("td", { class: "name" }, el("a", { href: `/device/${encodeURIComponent(d.device)}` }, d.device || "(no id)")),
      el("td", { class: "status" }, el("span", { class: `pill ${d.live ? "ok" : "missing"}` }, status)),
      el("td", { class: "num tick-hz" }, fmt(d.tick_hz, 1)),
      el("td", { class: "num p50" }, fmt(d.e2e_p50, 1)),
      el("td", { class: "num p99" }, fmt(d.e2e_p99, 1)),
      el("td", { class: "top" }, top),
      el("td", { class: "num streams" + (d.streams.ok < all ? " warn" : "") }, `${d.streams.ok}/${all}`),
      el("td", { class: "num results" }, d.results),
      el("td", { class: "num missed" + (d.missed ? " warn" : "") }, d.missed),
      el("td", { class: "alerts" }, d.alerts.join(" · ")));
  }));
}

function connect(delay = 500) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?fleet=1`);
  ws.onmessage = (ev) => { const u = JSON.parse(ev.data); if (u.kind === "fleet") { fleet = u; draw(); } };
  ws.onopen = () => { connected = true; delay = 500; draw(); };
  ws.onclose = () => { connected = false; draw(); setTimeout(() => connect(Math.min(delay * 2, 8000)), delay); };
}
connect();
