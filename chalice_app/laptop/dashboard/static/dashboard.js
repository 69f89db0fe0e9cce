// The live dashboard: polls /api/metrics every 2 s and draws inline SVG. No libraries, no network beyond this server.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
let selected = null;  // [tenant_id, payment_id] of the payment shown in the timeline panel

const $ = (id) => document.getElementById(id);
function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
const fmt = (v, digits = 0) => (v === null || v === undefined) ? "–" : Number(v).toFixed(digits);
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + " %";
const money = (minor, cur) => (minor / 100).toFixed(2) + " " + cur;
const time = (iso) => iso ? iso.slice(11, 23) : "–";

function fillTable(id, rows, onClick) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows.map((r) => {
    const tr = el("tr", r.attrs || {});
    for (const cell of r.cells) {
      const td = el("td");
      if (cell && cell.badge !== undefined) td.append(el("span", {class: "badge " + cell.badge}, cell.badge));
      else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
      tr.append(td);
    }
    if (onClick) { tr.classList.add("clickable"); tr.addEventListener("click", () => onClick(r, tr)); }
    return tr;
  }));
}

function drawThroughput(t) {
  const svg = $("throughput-chart"), W = 640, H = 180, L = 30, B = 20, T = 8;
  const series = ["accepted", "settled", "failed"];
  const max = Math.max(1, ...series.flatMap((s) => t[s]));
  const x = (i) => L + (W - L - 6) * i / (t[series[0]].length - 1);
  const y = (v) => H - B - (H - B - T) * v / max;
  const nodes = [];
  for (const f of [0, 0.5, 1]) {
    nodes.push(el("svg:line", {class: "grid", x1: L, x2: W, y1: y(max * f), y2: y(max * f)}));
    nodes.push(el("svg:text", {x: 2, y: y(max * f) + 3}, Math.round(max * f)));
  }
  nodes.push(el("svg:text", {x: L, y: H - 4}, "−2 min"), el("svg:text", {x: W - 30, y: H - 4}, "now"));
  for (const s of series) {
    const points = t[s].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    nodes.push(el("svg:polyline", {class: s, points, "data-series": s, "data-total": t[s].reduce((a, b) => a + b, 0)}));
  }
  svg.replaceChildren(...nodes);
}

function drawLatency(stages) {
  const svg = $("latency-chart"), W = 420, rowH = 24, L = 90, R = 96;
  const shown = stages.filter((s) => s.steps > 0);
  const max = Math.max(1, ...shown.map((s) => s.latency_ms.p95 || 0));
  const nodes = [];
  shown.forEach((s, i) => {
    const y = 6 + i * rowH, w = (v) => Math.max(1, (W - L - R) * (v || 0) / max);
    nodes.push(el("svg:text", {x: 0, y: y + 13}, s.stage));
    nodes.push(el("svg:rect", {class: "p95", x: L, y, width: w(s.latency_ms.p95), height: 16, "data-stage": s.stage}));
    nodes.push(el("svg:rect", {class: "p50", x: L, y: y + 4, width: w(s.latency_ms.p50), height: 8}));
    nodes.push(el("svg:text", {x: L + w(s.latency_ms.p95) + 4, y: y + 13},
                  `${fmt(s.latency_ms.p50, 1)} / ${fmt(s.latency_ms.p95, 1)}`));
  });
  if (!shown.length) nodes.push(el("svg:text", {x: 10, y: 20}, "no payments yet"));
  svg.setAttribute("viewBox", `0 0 ${W} ${Math.max(40, 12 + shown.length * rowH)}`);
  svg.replaceChildren(...nodes);
}

function drawReports(r) {
  const a = r.all;
  $("tile-payments").textContent = a.payments.count;
  $("tile-approval").textContent = pct(a.approval_rate);
  $("report-summary").textContent = `${a.payments.count} payments · ${a.payments.authorized} authorized · ` +
    `${a.payments.declined} declined · ${a.payments.failed} failed · ${a.payments.settled} settled · ` +
    `${a.changes_counted} changes counted`;
  fillTable("report-currencies", a.currencies.map((c) => ({cells: [c.currency, c.count, money(c.amount, c.currency),
    money(c.authorized_amount, c.currency), money(c.settled_amount, c.currency), money(c.refunded_amount, c.currency)]})));
  fillTable("report-psps", a.psps.map((p) => ({cells: [p.psp, p.attempts, p.authorized, p.declined,
    p.attempts - p.authorized - p.declined, fmt(p.avg_latency_ms, 1)]})));
  fillTable("report-tenants", r.tenants.map((t) => ({cells: [t.tenant || t.tenant_id, t.payments.count,
    pct(t.approval_rate), t.payments.settled]})));
}

function render(m) {
  $("status").textContent = `${m.mode} · updated ${time(m.generated_at)} · ${m.sample.payments} payments sampled · ${m.took_ms} ms`;
  $("tile-rate").textContent = fmt(m.throughput.accepted_per_s, 2);
  $("dlq-depth").textContent = m.dlq.depth;
  $("tile-breakers").textContent = m.psps.filter((p) => p.breaker !== "closed").length;
  drawThroughput(m.throughput);
  drawLatency(m.stages);
  fillTable("stages", m.stages.map((s) => ({cells: [s.stage, s.steps, fmt(s.per_s, 2), fmt(s.latency_ms.p50, 1), fmt(s.latency_ms.p95, 1),
    fmt(s.latency_ms.p99, 1), fmt(s.wait_ms.p50, 1), fmt(s.wait_ms.p95, 1), s.errors, s.dlq, s.queue_lag]})));
  fillTable("psp-health", m.psps.map((p) => ({cells: [p.psp, {badge: p.breaker}, p.attempts, pct(p.success_rate),
    fmt(p.latency_ms.p50, 1), fmt(p.latency_ms.p95, 1)]})));
  drawReports(m.reports);
  fillTable("dlq", m.dlq.entries.map((d) => ({entry: d, attrs: {"data-entry-id": d.entry_id},
    cells: [time(d.failed_at), d.stage, d.key, d.attempts, d.error]})), (r, tr) => {
      const pre = $("dlq-detail");
      pre.hidden = false;
      pre.textContent = JSON.stringify(r.entry, null, 2);
    });
  fillTable("recent-payments", m.recent.map((p) => ({payment: p,
    attrs: {"data-payment-id": p.payment_id, "data-tenant-id": p.tenant_id,
            class: selected && selected[1] === p.payment_id ? "selected" : ""},
    cells: [time(p.created_at), p.payment_id, p.tenant || p.tenant_id, {badge: p.status}, money(p.amount, p.currency),
            p.psp, fmt(p.total_ms, 1)]})), (r) => showTrace(r.payment.tenant_id, r.payment.payment_id));
}

async function showTrace(tenantId, paymentId) {
  selected = [tenantId, paymentId];
  const res = await fetch(`/api/payments/${encodeURIComponent(tenantId)}/${encodeURIComponent(paymentId)}`);
  if (!res.ok) { $("trace-title").textContent = `${paymentId}: ${res.status}`; return; }
  const tr = await res.json();
  $("trace-panel").hidden = false;
  $("trace-panel").dataset.paymentId = paymentId;
  $("trace-title").textContent = `${tr.payment_id} · ${tr.status} · ${money(tr.amount, tr.currency)} · ` +
    `${fmt(tr.total_ms, 1)} ms · ${tr.correlation_id}`;
  const W = 420, rowH = 18, L = 90, total = Math.max(1, tr.total_ms);
  const nodes = [];
  let elapsed = 0;
  tr.steps.forEach((s, i) => {
    const y = 4 + i * rowH, x0 = L + (W - L - 10) * elapsed / total;
    const w = Math.max(2, (W - L - 10) * s.since_previous_ms / total);
    nodes.push(el("svg:text", {x: 0, y: y + 11}, s.stage));
    nodes.push(el("svg:rect", {class: "step", x: x0, y, width: w, height: 12, "data-stage": s.stage}));
    elapsed += s.since_previous_ms;
  });
  $("trace-chart").setAttribute("viewBox", `0 0 ${W} ${Math.max(30, 8 + tr.steps.length * rowH)}`);
  $("trace-chart").replaceChildren(...nodes);
  fillTable("trace-steps", tr.steps.map((s) => ({cells: [s.seq, s.stage, s.action, s.to, fmt(s.since_previous_ms, 1), time(s.at)]})));
  fillTable("trace-attempts", tr.attempts.map((a) => ({cells: [a.number, a.psp, {badge: a.status}, a.code]})));
  document.querySelectorAll("#recent-payments tbody tr").forEach((row) =>
    row.classList.toggle("selected", row.dataset.paymentId === paymentId));
}

async function poll() {
  try {
    const res = await fetch("/api/metrics", {cache: "no-store"});
    if (!res.ok) throw new Error(`metrics: HTTP ${res.status}`);
    render(await res.json());
    document.body.dataset.loaded = "true";
  } catch (e) {
    $("status").textContent = `cannot reach the dashboard server (${e.message}); retrying`;
  }
  setTimeout(poll, POLL_MS);
}
poll();
