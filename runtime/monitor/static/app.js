// edgefuse monitor page: one WebSocket (/ws) brings a snapshot, then one JSON update per message the runtime
// published. Updates only change `state`; drawing happens at most once per animation frame. Every string from the
// network goes into the page as text (never as HTML).
"use strict";

const state = {
  live: false, counts: {}, malformed: 0, lastError: "", tickHz: 0, endpoint: "",
  streams: [], latency: {}, stats: {}, results: [], thumbs: {}, levels: {}, series: {}, peaks: {}, levelHist: {},
  anomaly: [], anomalyAlerts: 0,
};
// in a fleet, this page shows one device: /device/<id>; alone, the one runtime at /
const DEVICE = location.pathname.startsWith("/device/") ? decodeURIComponent(location.pathname.slice(8)) : null;
const QUERY = DEVICE === null ? "" : `device=${encodeURIComponent(DEVICE)}`;
const SERIES_POINTS = 240;
const LEVEL_POINTS = 60;
const ANOMALY_POINTS = 120;
let dirty = true;

// -- small DOM helpers -----------------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const $ = (sel) => document.querySelector(sel);
const fmt = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits));
const svgNS = "http://www.w3.org/2000/svg";

// -- folding updates -------------------------------------------------------------------------------------------------
function apply(u) {
  switch (u.kind) {
    case "snapshot":
      Object.assign(state, {
        live: u.live, counts: u.counts, malformed: u.malformed, lastError: u.last_error, tickHz: u.tick_hz,
        endpoint: u.endpoint, streams: u.streams, latency: u.latency, stats: u.stats, results: u.results,
        thumbs: u.thumbs, levels: u.levels, series: u.series, anomaly: u.anomaly || [], anomalyAlerts: u.anomaly_alerts || 0,
      });
      for (const [sid, l] of Object.entries(u.levels)) pushLevel(sid, l);
      break;
    case "result":
      state.results.push(u.result);
      if (state.results.length > 30) state.results.shift();
      state.latency = u.latency; state.tickHz = u.tick_hz; state.live = true;
      if (u.result.anomaly) {
        const a = u.result.anomaly;
        state.anomaly.push({ t_tick_ns: u.result.t_tick_ns, score: a.score, threshold: a.threshold, alert: a.alert });
        if (state.anomaly.length > ANOMALY_POINTS) state.anomaly.shift();
        state.anomalyAlerts = u.anomaly_alerts;
      }
      bump("result");
      break;
    case "stats":
      state.stats = u.stats; state.streams = u.streams; bump("stats");
      break;
    case "thumb":
      state.thumbs[u.source] = u.thumb; bump("thumb");
      break;
    case "level":
      state.levels[u.source] = u.level; pushLevel(u.source, u.level); bump("level");
      break;
    case "series": {
      let s = state.series[u.source];
      if (!s || s.channels.join() !== u.channels.join()) s = state.series[u.source] = { channels: u.channels, values: u.channels.map(() => []) };
      u.values.forEach((col, i) => { s.values[i].push(...col); s.values[i].splice(0, Math.max(0, s.values[i].length - SERIES_POINTS)); });
      bump("series");
      break;
    }
    case "heartbeat":
      state.live = u.live; state.counts = u.counts; state.malformed = u.malformed; state.streams = u.streams;
      break;
    case "malformed":
      state.malformed = u.malformed; state.lastError = u.last_error;
      break;
  }
  dirty = true;
}
function bump(kind) { state.counts[kind] = (state.counts[kind] || 0) + 1; }
function pushLevel(sid, l) {
  const db = Math.max(...l.rms_db);
  const h = (state.levelHist[sid] = state.levelHist[sid] || []);
  h.push(db);
  if (h.length > LEVEL_POINTS) h.shift();
  const p = state.peaks[sid];
  // peak hold: jumps up at once, falls back 1.5 dB per update
  state.peaks[sid] = p === undefined || db > p ? db : Math.max(db, p - 1.5);
}

// -- drawing -----------------------------------------------------------------------------------------------------------
function draw() {
  if (dirty) {
    dirty = false;
    drawHeader(); drawResult(); drawThumbs(); drawLevels(); drawStreams(); drawLatency(); drawSeries(); drawHistory(); drawAnomaly();
  }
  requestAnimationFrame(draw);
}

function drawHeader() {
  $("#endpoint").textContent = state.endpoint;
  if (DEVICE !== null && !$("#device")) {
    $("#endpoint").before(el("a", { class: "back", href: "/" }, "← fleet"), el("b", { id: "device" }, DEVICE));
  }
  const live = $("#live");
  live.textContent = state.live ? "live" : "silent";
  live.className = "pill " + (state.live ? "ok" : "missing");
  $("#tick-hz").textContent = fmt(state.tickHz, 1);
  $("#msg-count").textContent = Object.values(state.counts).reduce((a, b) => a + b, 0);
  $("#malformed").textContent = state.malformed;
  $("#malformed-box").className = "kpi" + (state.malformed ? " bad" : "");
  $("#malformed-box").title = state.lastError || "";
}

function drawResult() {
  const r = state.results[state.results.length - 1];
  if (!r) return;
  const box = el("div");
  for (const [head, scores] of Object.entries(r.scores)) {
    const top = r.top[head];
    const on = r.multilabel && r.multilabel[head];  // a multilabel head: the labels above their thresholds
    const block = el("div", { class: "head", "data-head": head },
      el("div", { class: "title" }, el("span", { class: "hname" }, head),
        el("span", { class: "top" }, on ? (on.join(" + ") || "none") : top),
        el("span", { class: "pct" }, on ? "" : fmt(100 * scores[top], 0) + "%")));
    const sorted = Object.entries(scores).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of sorted) {
      block.append(el("div", { class: "bar-row" + (label === top ? " best" : ""), "data-label": label },
        el("span", { class: "lbl" }, label),
        el("div", { class: "bar" }, el("i", { style: `width:${(100 * p).toFixed(1)}%` })),
        el("span", { class: "v" }, fmt(p, 2))));
    }
    box.append(block);
  }
  for (const [head, v] of Object.entries(r.values || {})) {  // regression heads: the value and its unit
    box.append(el("div", { class: "head", "data-head": head },
      el("div", { class: "title" }, el("span", { class: "hname" }, head), el("span", { class: "top" }, `${fmt(v.value, 2)} ${v.unit}`))));
  }
  const mask = el("div", { class: "mask" });
  for (const [m, present] of Object.entries(r.mask)) mask.append(el("span", { class: "chip" + (present ? "" : " off") }, m));
  box.append(mask);
  $("#result").replaceChildren(box);
  const e2e = r.latency_ms.e2e ?? r.latency_ms.total;
  $("#result-meta").textContent = `#${r.seq}` + (r.group ? ` · ${r.group}` : "") + (e2e !== undefined ? ` · ${fmt(e2e, 1)} ms` : "");
}

function drawThumbs() {
  const entries = Object.entries(state.thumbs);
  if (!entries.length) return;
  const box = $("#thumbs");
  for (const [sid, t] of entries) {
    let fig = box.querySelector(`[data-source="${CSS.escape(sid)}"]`);
    if (!fig) {
      box.querySelector(".empty")?.remove();
      fig = el("div", { class: "thumb-box", "data-source": sid }, el("img", { class: "thumb", alt: sid }), el("div", { class: "cap" }));
      box.append(fig);
    }
    const img = fig.querySelector("img");
    const src = `/thumb/${encodeURIComponent(sid)}.jpg?v=${t.version}` + (QUERY ? `&${QUERY}` : "");
    if (img.getAttribute("src") !== src) img.src = src;
    fig.querySelector(".cap").textContent = `${sid} · ${t.width}×${t.height}`;
  }
}

function drawLevels() {
  const entries = Object.entries(state.levels);
  if (!entries.length) return;
  const box = el("div");
  for (const [sid, l] of entries) {
    const db = Math.max(...l.rms_db);
    const pct = (v) => Math.min(100, Math.max(0, ((v + 60) / 60) * 100)); // -60..0 dBFS
    const track = el("div", { class: "track" }, el("div", { class: "fill", style: `width:${pct(db)}%` }),
      el("div", { class: "peak", style: `left:calc(${pct(state.peaks[sid])}% - 1px)` }));
    const meter = el("div", { class: "meter", "data-source": sid },
      el("div", { class: "cap" }, el("span", {}, sid), el("span", {}, el("b", { class: "db" }, fmt(db, 1)), " dBFS")),
      track, el("div", { class: "scale" }, ...["-60", "-45", "-30", "-15", "0"].map((s) => el("span", {}, s))));
    meter.append(sparkline(state.levelHist[sid] || [], 64, -60, 0));
    box.append(meter);
  }
  $("#levels").replaceChildren(box);
  for (const f of document.querySelectorAll(".meter .fill")) f.style.setProperty("--full", f.parentNode.clientWidth + "px");
}

function drawStreams() {
  const tbody = $("#streams tbody");
  const rows = state.streams.map((s) => {
    const reasons = Object.entries(s.drops_by_reason || {}).map(([r, n]) => `${r} ${n}`).join(", ");
    return el("tr", { "data-source": s.id },
      el("td", { class: "name" }, s.id),
      el("td", { class: "health" }, el("span", { class: `pill ${s.health}` }, s.health)),
      el("td", { class: "num rate" }, fmt(s.rate_hz, s.rate_hz >= 1000 ? 0 : 1)),
      el("td", { class: "num" }, s.samples ?? "–"),
      el("td", { class: "num drops" + (s.drops_total ? " warn" : ""), title: reasons }, s.drops_total ?? 0),
      el("td", { class: "num" }, s.queue_depth ?? "–"),
      el("td", { class: "num" }, fmt(s.sync_offset_ms, 1)),
      el("td", { class: "num" }, fmt(s.clock_offset_ms, 1)),
      el("td", { class: "num" }, fmt(s.clock_drift_ppm, 1)),
      el("td", { class: "fused" }, fusedStrip(s.fused || [])));
  });
  tbody.replaceChildren(...rows);
}

// the stream's presence in the recent ticks, oldest left: a gap shows a modality the model did not get
function fusedStrip(mask) {
  const strip = el("span", { class: "strip" });
  for (const present of mask.slice(-30)) strip.append(el("i", { class: present ? "on" : present === false ? "off" : "" }));
  return strip;
}

function drawLatency() {
  const entries = Object.entries(state.latency);
  const max = Math.max(1e-9, ...entries.map(([, v]) => v.p99 || 0));
  $("#latency tbody").replaceChildren(...entries.map(([stage, v]) =>
    el("tr", { "data-stage": stage },
      el("td", { class: "name" }, stage),
      el("td", { class: "num p50" }, fmt(v.p50, 2)),
      el("td", { class: "num p99" }, fmt(v.p99, 2)),
      el("td", { style: "width:35%" }, el("div", { class: "lat-bar", style: `width:${(100 * (v.p99 || 0) / max).toFixed(1)}%` })))));
  const drops = state.stats.drops || {};
  const parts = Object.entries(drops).filter(([, n]) => typeof n === "number").map(([r, n]) => `${r} ${n}`);
  $("#drops").textContent = parts.length ? "drops: " + parts.join(" · ") : "";
}

function sparkline(values, height, lo, hi) {
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${SERIES_POINTS} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  if (values.length > 1) {
    const min = lo ?? Math.min(...values), max = hi ?? Math.max(...values);
    const span = max - min || 1;
    const x0 = SERIES_POINTS - values.length;
    const pts = values.map((v, i) => `${x0 + i},${(height - 3 - ((v - min) / span) * (height - 6)).toFixed(1)}`);
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
  }
  return svg;
}

function drawSeries() {
  const entries = Object.entries(state.series);
  if (!entries.length) return;
  const box = $("#series");
  box.replaceChildren();
  for (const [sid, s] of entries) {
    if (entries.length > 1) box.append(el("div", { class: "series-src" }, sid));
    s.channels.forEach((ch, i) => {
      const v = s.values[i];
      box.append(el("div", { class: "spark", "data-channel": ch },
        el("div", { class: "cap" }, el("span", {}, ch), el("span", { class: "v" }, fmt(v[v.length - 1], 2))),
        sparkline(v, 38)));
    });
  }
}

function drawHistory() {
  const rows = state.results.slice(-8).reverse().map((r) => {
    const e2e = r.latency_ms.e2e ?? r.latency_ms.total;
    const score = Math.max(...Object.entries(r.top).map(([h, l]) => r.scores[h][l]));
    // synthetic streams know the ground truth: show whether the fused result got it
    const known = r.truth ? Object.keys(r.top).filter((h) => r.truth[h] !== undefined) : [];
    const right = known.every((h) => r.truth[h] === r.top[h]);
    const truth = !known.length ? el("span", { class: "t" }, "–")
      : right ? el("span", { class: "right" }, "✓ truth")
      : el("span", { class: "wrong" }, "✗ truth: " + known.map((h) => r.truth[h]).join(" · "));
    const chips = el("span", { class: "mask" });
    for (const [m, present] of Object.entries(r.mask)) chips.append(el("span", { class: "chip" + (present ? "" : " off") }, m));
    return el("tr", {},
      el("td", { class: "t" }, `#${r.seq}` + (r.group ? ` ${r.group}` : "")),
      el("td", { class: "lab" }, Object.values(r.top).join(" · ")),
      el("td", { class: "num" }, fmt(100 * score, 0) + "%"),
      el("td", {}, chips),
      el("td", { class: "truth" }, truth),
      el("td", { class: "num t" }, e2e !== undefined ? `${fmt(e2e, 1)} ms` : ""));
  });
  $("#history tbody").replaceChildren(...rows);
}

// -- connection --------------------------------------------------------------------------------------------------------
function connect(delay = 500) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` + (QUERY ? `?${QUERY}` : ""));
  ws.onmessage = (ev) => apply(JSON.parse(ev.data));
  ws.onopen = () => { delay = 500; };
  ws.onclose = () => {
    state.live = false; dirty = true;
    setTimeout(() => connect(Math.min(delay * 2, 8000)), delay); // the monitor restarted: come back
  };
}
connect();
requestAnimationFrame(draw);

// the anomaly model's fused score over the recent ticks, its alert threshold, and the ticks that alerted
function drawAnomaly() {
  const pts = state.anomaly;
  if (!pts.length) return;
  $("#anomaly-card").classList.remove("hidden");
  const W = 600, H = 120, pad = 6;
  const last = pts[pts.length - 1];
  const values = pts.map((p) => p.score).concat([last.threshold]);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-6) { lo -= 1; hi += 1; }
  const x = (i) => pad + (W - 2 * pad) * (pts.length > 1 ? i / (pts.length - 1) : 0.5);
  const y = (v) => H - pad - (H - 2 * pad) * (v - lo) / (hi - lo);
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("class", "score");
  line.setAttribute("points", pts.map((p, i) => `${x(i).toFixed(1)},${y(p.score).toFixed(1)}`).join(" "));
  const thr = document.createElementNS(svgNS, "line");
  thr.setAttribute("class", "threshold");
  thr.setAttribute("data-threshold", String(last.threshold));
  for (const [k, v] of [["x1", pad], ["x2", W - pad], ["y1", y(last.threshold)], ["y2", y(last.threshold)]]) thr.setAttribute(k, v.toFixed(1));
  svg.append(line, thr);
  pts.forEach((p, i) => {
    if (!p.alert) return;
    const c = document.createElementNS(svgNS, "circle");
    c.setAttribute("class", "alert");
    for (const [k, v] of [["cx", x(i)], ["cy", y(p.score)], ["r", 3]]) c.setAttribute(k, v.toFixed(1));
    svg.append(c);
  });
  const r = state.results[state.results.length - 1];
  const mods = el("div", { class: "mods" });
  const per = r && r.anomaly ? r.anomaly.modalities : {};
  for (const [m, v] of Object.entries(per)) mods.append(el("span", { class: v > last.threshold ? "over" : "", "data-modality": m }, `${m} ${fmt(v, 2)}`));
  $("#anomaly").replaceChildren(svg, mods);
  $("#anomaly-meta").textContent = `score ${fmt(last.score, 2)} · threshold ${fmt(last.threshold, 2)} · ${state.anomalyAlerts} alerts`;
  const status = $("#anomaly-status");
  status.textContent = last.alert ? "ALERT" : "normal";
  status.className = "pill " + (last.alert ? "missing" : "ok");
}
