/* Switchboard dashboard: runs, run pages, insights, approvals, evals; charts by Chart.js (vendored).
   No framework, no CDN. Every value from the API is escaped before it reaches the page
   (run payloads carry data from Stripe, HubSpot and model output). */
"use strict";

const KEY_STORAGE = "switchboard.apiKey";
const AGENT_COLORS = { watcher: "#3d5afe", analyst: "#8e44ad", advisor: "#16a085" };
const QUEUE_COLORS = ["#d64545", "#d98b0b", "#2f7fd1", "#7f8aa3"];
const state = { refreshS: 5, timer: null, filtersLoaded: false, keyRequired: false };

/* ------------------------------------------------------------------ helpers */

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const $ = (sel, root = document) => root.querySelector(sel);
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}
function fmtInt(n) { return (n ?? 0).toLocaleString("en-US"); }
function fmtUsd(n) { return n >= 1 ? `$${n.toFixed(2)}` : `$${(n ?? 0).toFixed(4)}`; }
// null: the model has no price in the table — an unknown cost, not a free one
function fmtCost(n) { return n === null || n === undefined ? "unknown" : fmtUsd(n); }
function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
function pill(status, extra = "") { return `<span class="pill ${esc(status)} ${extra}">${esc(String(status).replace(/_/g, " "))}</span>`; }
function agentLabel(agent) {
  if (!agent) return "–";
  return `<span class="agent-dot ${swatch(agent)}"></span>${esc(agent)}`;
}
/* colours come from classes (dashboard.css): the CSP allows no inline style attributes */
function swatch(agent) { return AGENT_COLORS[agent] ? `c-${agent}` : "c-other"; }
function legend(entries) {
  return `<div class="legend">${entries.map(([cls, label]) => `<span><i class="${cls}"></i>${esc(label)}</span>`).join("")}</div>`;
}
function jsonHtml(value) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  return esc(text).replace(
    /(&quot;(?:\\.|[^&]|&(?!quot;))*?&quot;)(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g,
    (m, str, colon, bool, num) => {
      if (str) return colon ? `<span class="k">${str}</span>${colon}` : `<span class="s">${str}</span>`;
      if (bool) return `<span class="b">${bool}</span>`;
      return `<span class="n">${num}</span>`;
    });
}
function flash(message, bad = false) {
  const el = $("#flash");
  el.textContent = message;
  el.className = bad ? "flash bad" : "flash";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

/* ------------------------------------------------------------------ API access */

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const key = localStorage.getItem(KEY_STORAGE);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    askForKey(await detailOf(response));
    throw new Unauthorized("an API key is required");
  }
  if (!response.ok) throw new Error(await detailOf(response));
  return response.json();
}
async function detailOf(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}
function askForKey(message) {
  const dialog = $("#key-dialog");
  const error = $("#key-error");
  const stored = localStorage.getItem(KEY_STORAGE);
  error.hidden = !stored;
  error.textContent = stored ? `The stored key was refused: ${message}` : "";
  if (!dialog.open) dialog.showModal();
}
function setupKeyDialog() {
  $("#key-form").addEventListener("submit", () => {
    const value = $("#key-input").value.trim();
    if (value) localStorage.setItem(KEY_STORAGE, value);
    $("#key-input").value = "";
    render();
  });
  $("#key-forget").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("#key-input").value = "";
    $("#key-error").hidden = true;
  });
  $("#key-button").addEventListener("click", () => askForKey(""));
}

/* ------------------------------------------------------------------ SVG charts */


/* Charts: Chart.js 4 (vendored as chart.umd.min.js with its MIT licence, no CDN). One chart per
   panel, updated in place on every refresh; a panel with nothing to show says so in words. */
const charts = {};
function hourLabel(iso) { const d = new Date(iso); return `${String(d.getHours()).padStart(2, "0")}:00`; }
function fmtTokens(v) { return v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : String(Math.round(v)); }

function chartEmpty(id, message) {
  if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  $(id).innerHTML = `<p class="chart-empty">${esc(message)}</p>`;
}

function chartIn(id, config) {
  const el = $(id);
  const existing = charts[id];
  if (existing && el.contains(existing.canvas) && existing.config.type === config.type) {
    existing.data = config.data;
    existing.options = config.options;
    existing.update("none");
    return existing;
  }
  if (existing) existing.destroy();
  el.innerHTML = `<div class="chart-box"><canvas></canvas></div>`;
  charts[id] = new Chart(el.querySelector("canvas"), config);
  return charts[id];
}

function baseOptions(extra = {}) {
  return {
    animation: false, responsive: true, maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom", labels: { boxWidth: 10, font: { size: 11 } } } },
    ...extra,
  };
}

function drawLatency(rows) {
  if (!rows.length) { chartEmpty("#chart-latency", "No finished steps in the last 24 hours."); return; }
  const buckets = [...new Set(rows.map((r) => r.bucket))].sort();
  const agents = [...new Set(rows.map((r) => r.agent))].sort((a, b) => Object.keys(AGENT_COLORS).indexOf(a) - Object.keys(AGENT_COLORS).indexOf(b));
  const series = (agent, field) => buckets.map((b) => { const r = rows.find((x) => x.bucket === b && x.agent === agent); return r ? r[field] : null; });
  const datasets = agents.flatMap((agent) => {
    const color = AGENT_COLORS[agent] || "#7f8aa3";
    return [
      { label: `${agent} p50`, data: series(agent, "p50_ms"), borderColor: color, backgroundColor: color, pointRadius: 3, spanGaps: true },
      { label: `${agent} p95`, data: series(agent, "p95_ms"), borderColor: color, backgroundColor: "#fff", borderDash: [5, 4], pointRadius: 2, spanGaps: true },
    ];
  });
  chartIn("#chart-latency", {
    type: "line", data: { labels: buckets.map(hourLabel), datasets },
    options: baseOptions({
      scales: { y: { beginAtZero: true, title: { display: true, text: "step latency" }, ticks: { callback: (v) => fmtMs(v) } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 10, font: { size: 11 } } },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmtMs(c.parsed.y)}` } } },
    }),
  });
}

function drawOutcomes(rows) {
  if (!rows.length) { chartEmpty("#chart-outcomes", "No runs in the last 24 hours."); return; }
  const labels = rows.map((r) => hourLabel(r.bucket));
  const bar = (label, field, color) => ({ type: "bar", label, data: rows.map((r) => r[field]), backgroundColor: color, stack: "runs", yAxisID: "y" });
  chartIn("#chart-outcomes", {
    type: "bar",
    data: { labels, datasets: [
      bar("succeeded", "succeeded", "#1e9e63"), bar("awaiting approval", "awaiting_approval", "#d98b0b"),
      bar("failed", "failed", "#d64545"), bar("in flight", "in_flight", "#9fb3d9"),
      { type: "line", label: "success rate (finished runs)", data: rows.map((r) => (r.success_rate === null ? null : r.success_rate * 100)),
        borderColor: "#141b2d", backgroundColor: "#141b2d", yAxisID: "rate", spanGaps: true, pointRadius: 3 },
    ] },
    options: baseOptions({
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "runs" }, ticks: { precision: 0 }, suggestedMax: 4 },
        rate: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, ticks: { callback: (v) => `${v}%`, stepSize: 25 } },
      },
    }),
  });
}

function drawUsage(rows) {
  if (!rows.length) { chartEmpty("#chart-usage", "No runs in the last 14 days."); return; }
  const anyCost = rows.some((r) => r.cost_usd > 0);
  const anyTokens = rows.some((r) => r.tokens_in + r.tokens_out > 0);
  if (!anyTokens && !anyCost) { chartEmpty("#chart-usage", `${fmtInt(rows.reduce((n, r) => n + r.runs, 0))} runs, no model tokens used (the offline provider): nothing to chart.`); return; }
  const datasets = [
    { type: "bar", label: "tokens in", data: rows.map((r) => r.tokens_in), backgroundColor: "#3d5afe", stack: "tokens", yAxisID: "y" },
    { type: "bar", label: "tokens out", data: rows.map((r) => r.tokens_out), backgroundColor: "#9aa9ff", stack: "tokens", yAxisID: "y" },
  ];
  if (anyCost) datasets.push({ type: "line", label: "estimated cost", data: rows.map((r) => r.cost_usd), borderColor: "#d98b0b", backgroundColor: "#d98b0b", yAxisID: "cost", pointRadius: 3 });
  chartIn("#chart-usage", {
    type: "bar", data: { labels: rows.map((r) => r.day.slice(5)), datasets },
    options: baseOptions({
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "tokens" }, ticks: { callback: (v) => fmtTokens(v) } },
        cost: { display: anyCost, position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, ticks: { callback: (v) => fmtUsd(v) } },
      },
    }),
  });
}

function drawQueues(depths) {
  if (!depths) { chartEmpty("#chart-queues", "The broker cannot be read: queue depths are unknown."); return; }
  const names = Object.keys(depths);
  const total = Object.values(depths).reduce((a, b) => a + b, 0);
  chartIn("#chart-queues", {
    type: "bar",
    data: { labels: names.map((n) => n.split(".").pop()), datasets: [{ label: "messages waiting", data: names.map((n) => depths[n]), backgroundColor: names.map((_, i) => QUEUE_COLORS[i % 4]) }] },
    options: baseOptions({
      indexAxis: "y",
      scales: { x: { beginAtZero: true, suggestedMax: 5, ticks: { precision: 0 }, title: { display: true, text: "messages waiting" } } },
      plugins: { legend: { display: false }, title: { display: total === 0, text: "Every queue is empty: nothing is waiting." } },
    }),
  });
}

/* ------------------------------------------------------------------ overview */

function filterParams() {
  const form = $("#run-filters");
  const params = new URLSearchParams({ limit: "50" });
  for (const name of ["agent", "status", "insight_kind"]) {
    const value = form.elements[name].value;
    if (value) params.set(name, value);
  }
  return params;
}

async function loadFilters() {
  if (state.filtersLoaded) return;
  const options = await api("/api/runs/filters");
  const form = $("#run-filters");
  for (const name of ["agent", "status", "insight_kind"]) {
    const select = form.elements[name];
    const current = select.value;
    select.innerHTML = `<option value="">any</option>` + options[name].map((v) => `<option value="${esc(v)}">${esc(v.replace(/_/g, " "))}</option>`).join("");
    select.value = current;
  }
  state.filtersLoaded = true;
}

async function loadRuns() {
  const data = await api(`/api/runs?${filterParams()}`);
  const body = $("#runs-table tbody");
  if (!data.runs.length) {
    body.innerHTML = `<tr><td colspan="11" class="muted">No runs${filterParams().toString().includes("&") ? " match these filters" : " yet: run <code>switchboard demo</code>"}.</td></tr>`;
    return;
  }
  body.innerHTML = data.runs.map((r) => {
    let actions = `${r.actions_executed} done`;
    if (r.actions_awaiting_approval) actions += `, <b>${r.actions_awaiting_approval} awaiting approval</b>`;
    return `<tr data-run-id="${esc(r.run_id)}">
      <td class="mono"><a href="/dashboard/runs/${encodeURIComponent(r.run_id)}" data-run-link>${esc(r.run_id.slice(0, 8))}</a></td>
      <td>${esc((r.insight_kind || "–").replace(/_/g, " "))}</td>
      <td class="agent">${["done", "awaiting_approval"].includes(r.status) ? `<span class="muted">all three</span>` : `${r.status === "failed" ? "stopped at " : ""}${agentLabel(r.agent)}`}</td>
      <td>${pill(r.status)}</td>
      <td class="num">${esc(fmtMs(r.latency_ms))}</td>
      <td class="num">${fmtInt(r.tokens_in)} / ${fmtInt(r.tokens_out)}</td>
      <td class="num">${esc(fmtCost(r.cost_usd))}</td>
      <td>${esc(r.provider || "–")}</td>
      <td>${actions}</td>
      <td title="${esc(fmtTime(r.created_at))}">${esc(ago(r.created_at))}</td>
      <td class="err" title="${esc(r.error || "")}">${esc(r.error || "")}</td>
    </tr>`;
  }).join("");
}

/* The header's badges on every page: approvals waiting for a decision, open insights. */
async function updateBadges() {
  const [approvals, insights] = await Promise.all([api("/api/approvals?status=pending&limit=500"), api("/api/insights?status=open&limit=1000")]);
  for (const [id, count] of [["#approvals-badge", approvals.count], ["#insights-badge", insights.count]]) {
    $(id).hidden = count === 0;
    $(id).textContent = count;
  }
}

async function loadApprovals() {
  const data = await api("/api/approvals?status=pending");
  $("#stat-approvals").textContent = fmtInt(data.count);
  const list = $("#approvals-list");
  if (!data.approvals.length) { list.innerHTML = `<p class="muted">Nothing is waiting for a decision.</p>`; return; }
  list.innerHTML = data.approvals.map((a) => `
    <div class="approval" data-approval-id="${a.id}">
      ${pill(a.risk, `risk-${esc(a.risk)}`)}
      <div>
        <div class="what">${esc(a.action_type.replace(/_/g, " "))} <span class="muted">· run <a href="/dashboard/runs/${encodeURIComponent(a.run_id)}" data-run-link class="mono">${esc(a.run_id)}</a> · ${esc(ago(a.created_at))}</span></div>
        <div class="summary">${esc(a.summary)}</div>
      </div>
      <div class="buttons">
        <button type="button" class="approve" data-decide="approve" data-id="${a.id}">Approve</button>
        <button type="button" class="reject" data-decide="reject" data-id="${a.id}">Reject</button>
      </div>
    </div>`).join("");
}

async function decide(id, decision, button) {
  const buttons = document.querySelectorAll(`[data-id="${id}"]`);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    let options = { method: "POST" };
    if (decision === "reject") {
      const reason = prompt("Reason for rejecting (optional):") ?? null;
      options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason }) };
    }
    await api(`/api/approvals/${id}/${decision}`, options);
    flash(decision === "approve" ? `Approval ${id} approved: a worker executes it now.` : `Approval ${id} rejected.`);
  } catch (error) {
    if (!(error instanceof Unauthorized)) flash(`Could not ${decision} approval ${id}: ${error.message}`, true);
    buttons.forEach((b) => { b.disabled = false; });
  }
  render();
}

async function loadCharts() {
  const data = await api("/api/dashboard/charts?hours=24&days=14");
  drawLatency(data.latency);
  drawOutcomes(data.outcomes);
  drawUsage(data.usage);
  drawQueues(data.queues);
  const totals = data.outcomes.reduce((acc, r) => ({ s: acc.s + r.succeeded, f: acc.f + r.failed, i: acc.i + r.in_flight + r.awaiting_approval }), { s: 0, f: 0, i: 0 });
  $("#stat-runs").textContent = fmtInt(totals.s + totals.f + totals.i);
  $("#stat-success").textContent = totals.s + totals.f ? `${((100 * totals.s) / (totals.s + totals.f)).toFixed(1)}%` : "–";
  const lastBucket = data.latency.length ? data.latency[data.latency.length - 1].bucket : null;
  const latest = data.latency.filter((r) => r.bucket === lastBucket);
  $("#stat-p95").textContent = latest.length ? fmtMs(Math.max(...latest.map((r) => r.p95_ms))) : "–";
  const today = new Date().toISOString().slice(0, 10);
  const usage = data.usage.find((r) => r.day === today);
  $("#stat-cost").textContent = fmtUsd(usage ? usage.cost_usd : 0);
}

async function renderOverview() {
  await loadFilters();
  await Promise.all([loadRuns(), loadApprovals(), loadCharts()]);
}

/* ------------------------------------------------------------------ run page */

function timelineSvg(steps) {
  const timed = steps.filter((s) => s.started_at);
  if (!timed.length) return `<p class="muted">No step has started yet.</p>`;
  const t = (iso) => new Date(iso).getTime();
  const starts = timed.map((s) => t(s.enqueued_at || s.started_at));
  const ends = timed.map((s) => (s.finished_at ? t(s.finished_at) : Date.now()));
  const t0 = Math.min(...starts), t1 = Math.max(...ends), span = Math.max(1, t1 - t0);
  const W = 960, rowH = 30, L = 90, R = 48, H = timed.length * rowH + 26;
  const xOf = (ms) => L + ((W - L - R) * (ms - t0)) / span;
  let svg = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="xMinYMin meet">`;
  for (let i = 0; i <= 4; i++) {
    const x = L + ((W - L - R) * i) / 4;
    svg += `<line class="grid-line" stroke="#eef1f6" x1="${x}" x2="${x}" y1="0" y2="${H - 20}"/><text x="${x}" y="${H - 6}" text-anchor="middle">+${esc(fmtMs((span * i) / 4))}</text>`;
  }
  timed.forEach((s, i) => {
    const y = i * rowH + 4, color = AGENT_COLORS[s.agent] || "#999";
    svg += `<text x="${L - 10}" y="${y + 16}" text-anchor="end" class="cap">${esc(s.step)}</text>`;
    if (s.enqueued_at) {
      const xa = xOf(t(s.enqueued_at)), xb = xOf(t(s.started_at));
      svg += `<rect x="${xa.toFixed(1)}" y="${y + 8}" width="${Math.max(1, xb - xa).toFixed(1)}" height="6" fill="${color}" opacity=".25" rx="3"><title>queue wait ${esc(fmtMs(s.queue_wait_ms))}</title></rect>`;
    }
    const xs = xOf(t(s.started_at)), xe = xOf(s.finished_at ? t(s.finished_at) : Date.now());
    const fill = s.status === "failed" ? "#d64545" : color;
    svg += `<rect x="${xs.toFixed(1)}" y="${y}" width="${Math.max(3, xe - xs).toFixed(1)}" height="22" fill="${fill}" rx="5"><title>${esc(s.step)}: ${esc(s.status)}, ${esc(fmtMs(s.latency_ms))}</title></rect>`;
    const label = `${fmtMs(s.latency_ms)}${s.retries ? ` · ${s.retries} retr${s.retries === 1 ? "y" : "ies"}` : ""}`;
    const inside = xe - xs > 90;
    svg += `<text x="${(inside ? xs + 8 : xe + 6).toFixed(1)}" y="${y + 15}" class="${inside ? "bar-label" : ""}">${esc(label)}</text>`;
  });
  return svg + "</svg>";
}

function payload(label, value) {
  if (value === null || value === undefined) return "";
  return `<details><summary>${esc(label)}</summary><pre class="json">${jsonHtml(value)}</pre></details>`;
}

function stepOutput(run, name) {
  const step = run.steps.find((s) => s.step === name && s.status === "done");
  return step ? step.output : null;
}

/* The answer first: what was found, why, and what will be done — from the Analyst's and the
   Advisor's outputs; the timeline, tool calls and raw payloads follow. */
function answerCard(run) {
  const analysis = stepOutput(run, "analyst") || (stepOutput(run, "advisor") || {}).analysis;
  const plan = stepOutput(run, "advisor");
  const alert = (analysis && analysis.alert) || (stepOutput(run, "watcher") || {}).alert;
  if (!analysis && !alert) return `<div class="card" id="run-answer"><h2>The answer</h2><p class="muted">No analysis yet: the run has not reached the Analyst.</p></div>`;
  const evidence = (analysis && analysis.evidence_ids) || [];
  const actions = (plan && plan.actions) || [];
  const describe = (a) => {
    const approval = run.approvals.find((x) => x.action && x.action.idempotency_key === a.idempotency_key);
    const done = run.actions.find((x) => x.action_type === a.type);
    const state = approval ? pill(approval.status) : done ? pill(done.status) : "";
    const fields = Object.entries(a).filter(([k, v]) => !["type", "idempotency_key", "schema_version", "risk"].includes(k) && v !== null && v !== "")
      .map(([k, v]) => `<div><span class="label">${esc(k.replace(/_/g, " "))}</span> ${esc(typeof v === "object" ? JSON.stringify(v) : String(v))}</div>`).join("");
    return `<li class="planned-action" data-planned-action="${esc(a.type)}"><div class="what">${esc(a.type.replace(/_/g, " "))} ${pill(a.risk, `risk-${esc(a.risk)}`)} ${state}</div>${fields}</li>`;
  };
  return `<div class="card" id="run-answer"><h2>The answer</h2>
    ${alert ? `<div class="answer-alert">${pill(alert.severity, `risk-${esc(alert.severity)}`)} ${esc(alert.title)}${alert.summary ? `<div class="muted">${esc(alert.summary)}</div>` : ""}</div>` : ""}
    ${analysis ? `<div class="answer-cause"><span class="label">Root cause</span> <strong id="answer-root-cause">${esc(String(analysis.root_cause).replace(/_/g, " "))}</strong>
      <span class="muted">confidence ${Math.round((analysis.confidence ?? 0) * 100)}%</span></div>
      <p class="narrative" id="answer-narrative">${esc(analysis.narrative)}</p>
      <div class="evidence" id="answer-evidence"><span class="label">Evidence</span> ${evidence.length ? evidence.map((id) => `<a href="#" class="evidence-id" data-evidence="${esc(id)}" title="show the stored record"><code>${esc(id)}</code></a>`).join(" ") : `<span class="muted">none cited</span>`}</div>
      <div id="answer-record"></div>` : ""}
    ${plan ? `<h3>The plan</h3><p class="rationale" id="answer-rationale">${esc(plan.rationale)}</p><ul class="plan" id="answer-actions">${actions.map(describe).join("")}</ul>` : `<p class="muted">No plan yet.</p>`}
  </div>`;
}

/* An evidence id opens the stored record(s) it names, below the evidence list. */
async function showRecord(id) {
  const box = $("#answer-record");
  try {
    const data = await api(`/api/records/${encodeURIComponent(id)}`);
    box.innerHTML = data.records.map((r) => `<div class="record" data-record="${esc(r.id)}"><div class="muted">${esc(r.source)} ${esc(r.type)} <code>${esc(r.id)}</code> · ${esc(fmtTime(r.occurred_at))}</div><pre class="json">${jsonHtml(r.data)}</pre></div>`).join("");
  } catch (error) {
    if (!(error instanceof Unauthorized)) box.innerHTML = `<p class="error">${esc(error.message)}</p>`;
  }
  state.runSettled = true;  // keep it open: a settled run page does not re-render under the reader
}

function renderRun(run) {
  const meta = [
    ["Status", pill(run.status)], ["Agent reached", agentLabel(run.agent)], ["Queue", esc(run.queue || "–")],
    ["Queue wait", esc(fmtMs(run.queue_wait_ms))], ["Latency", esc(fmtMs(run.latency_ms))],
    ["Tokens in / out", `${fmtInt(run.tokens_in)} / ${fmtInt(run.tokens_out)}`],
    ["Cache read / write", `${fmtInt(run.cache_read_tokens)} / ${fmtInt(run.cache_write_tokens)}`],
    ["Estimated cost", esc(fmtCost(run.cost_usd))],
    ["Provider", esc(run.provider || "–")], ["Model", esc(run.model || "–")], ["Retries", fmtInt(run.retries)],
    ["Created", esc(fmtTime(run.created_at))],
    run.status === "awaiting_approval" ? ["Waiting for", "a decision on its approvals"] : ["Finished", esc(fmtTime(run.finished_at))],
  ];
  const insight = run.insight;
  const steps = run.steps.map((s) => `
    <div class="step ${esc(s.agent)}" data-step="${esc(s.step)}">
      <div class="step-head">
        <span class="name">${esc(s.step)}</span>${pill(s.status)}
        <span class="facts">${esc(fmtMs(s.latency_ms))} · waited ${esc(fmtMs(s.queue_wait_ms))} in ${esc(s.queue || "–")} · attempt ${s.attempt}${s.retries ? ` · ${s.retries} retries` : ""} · ${fmtInt(s.tokens_in)}/${fmtInt(s.tokens_out)} tokens · cache ${fmtInt(s.cache_read_tokens)}/${fmtInt(s.cache_write_tokens)} · ${esc(fmtCost(s.cost_usd))} · ${esc(s.provider || "–")}${s.model ? ` (${esc(s.model)})` : ""}</span>
      </div>
      ${s.error ? `<div class="step-error">${esc(s.error)}</div>` : ""}
      ${payload("Input", s.input)}${payload("Output", s.output)}
    </div>`).join("") || `<p class="muted">No steps recorded yet.</p>`;
  const toolRows = run.tool_calls.map((c) => `
    <tr data-tool-call="${c.id}">
      <td class="mono">${esc(c.tool)}</td><td>${esc(c.step || "–")}</td><td>${pill(c.status)}</td>
      <td class="num">${c.attempts}</td><td class="num">${esc(fmtMs(c.latency_ms))}</td>
      <td class="err" title="${esc(c.error_message || "")}">${esc(c.error_class ? `${c.error_class}: ${c.error_message}` : "")}</td>
      <td>${payload("input", c.input)}${payload("output", c.output)}</td>
    </tr>`).join("");
  const approvals = run.approvals.map((a) => `
    <tr data-approval="${a.id}">
      <td>${esc(a.action_type.replace(/_/g, " "))}</td><td class="summary">${esc(a.summary || "")}</td><td>${pill(a.risk, `risk-${esc(a.risk)}`)}</td><td>${pill(a.status)}</td>
      <td>${esc(a.decided_by || "–")}${a.decided_at ? ` · ${esc(fmtTime(a.decided_at))}` : ""}</td>
      <td>${a.status === "pending" ? `<button type="button" class="approve" data-decide="approve" data-id="${a.id}">Approve</button> <button type="button" class="reject" data-decide="reject" data-id="${a.id}">Reject</button>` : esc(a.reason || "")}</td>
    </tr>`).join("");
  const actions = run.actions.map((e) => `
    <tr data-action="${esc(e.action_type)}">
      <td>${esc(e.action_type.replace(/_/g, " "))}</td><td>${pill(e.status)}</td><td>${esc(fmtTime(e.executed_at))}</td>
      <td>${payload("result", e.result)}</td>
    </tr>`).join("");
  const decisions = run.decisions.map((d) => `
    <tr><td>${esc(d.kind)}</td><td>${esc(d.step || "–")}</td><td>${esc(d.agent || "–")}</td><td>${pill(d.status)}</td><td>${esc(fmtTime(d.created_at))}</td><td>${payload("details", { input: d.input, output: d.output })}</td></tr>`).join("");

  $("#run-detail").innerHTML = `
    <div class="card">
      <div class="run-head">
        <div>
          <h1>${esc((run.insight_kind || "run").replace(/_/g, " "))}</h1>
          <div class="muted mono" id="run-id">${esc(run.run_id)}</div>
          ${insight ? `<div class="insight-line">${pill(insight.severity, `risk-${esc(insight.severity)}`)} ${esc(insight.title)} <span class="muted">· ${esc(insight.source)} ${esc(insight.entity_type || "")} ${esc(insight.entity_id || "")}</span></div>` : ""}
          ${run.replay_of ? `<div class="muted">replay of ${esc(run.replay_of)}</div>` : ""}
          ${run.trace_url ? `<div><a id="trace-link" href="${esc(run.trace_url)}" target="_blank" rel="noopener noreferrer">trace ${esc(run.trace_id)}</a></div>` : ""}
        </div>
        <div>${run.status === "failed" ? `
          <button type="button" id="replay-button" class="primary" title="Run it again from the step that failed">Replay from failed step</button>` : ""}
        </div>
      </div>
      <div class="run-meta">${meta.map(([l, v]) => `<div><div class="label">${esc(l)}</div><div class="value">${v}</div></div>`).join("")}</div>
      ${run.error ? `<div class="run-error" id="run-error">${esc(run.error)}</div>` : ""}
    </div>
    ${answerCard(run)}
    <div class="card timeline"><h2>Step timeline <small>faint: queue wait · solid: running</small></h2>${timelineSvg(run.steps)}</div>
    <div class="card"><h2>Steps</h2><div class="steps" id="run-steps">${steps}</div></div>
    <div class="card"><h2>Tool calls <small>${run.tool_calls.length}</small></h2>
      ${toolRows ? `<div class="table-wrap"><table id="tool-calls"><thead><tr><th>Tool</th><th>Step</th><th>Status</th><th class="num">Attempts</th><th class="num">Latency</th><th>Error</th><th>Payloads</th></tr></thead><tbody>${toolRows}</tbody></table></div>` : `<p class="muted">No tool calls.</p>`}
    </div>
    <div class="card"><h2>Approvals</h2>
      ${approvals ? `<table id="run-approvals"><thead><tr><th>Action</th><th>What, to whom and why</th><th>Risk</th><th>Status</th><th>Decided</th><th></th></tr></thead><tbody>${approvals}</tbody></table>` : `<p class="muted">No action of this run needed approval.</p>`}
    </div>
    <div class="card"><h2>Executed actions <small>${run.actions.length}</small></h2>
      ${actions ? `<table id="run-actions"><thead><tr><th>Action</th><th>Status</th><th>Executed</th><th>Result</th></tr></thead><tbody>${actions}</tbody></table>` : `<p class="muted">Nothing executed yet.</p>`}
    </div>
    ${decisions ? `<div class="card"><h2>Decisions</h2><table id="run-decisions"><thead><tr><th>Kind</th><th>Step</th><th>By</th><th>Status</th><th>When</th><th></th></tr></thead><tbody>${decisions}</tbody></table></div>` : ""}`;
  const replayButton = $("#replay-button");
  if (!replayButton) return;  // only a failed run can be replayed
  replayButton.addEventListener("click", async () => {
    replayButton.disabled = true;
    try {
      const result = await api(`/api/runs/${encodeURIComponent(run.run_id)}/replay`, { method: "POST" });
      flash(`Run queued again from its ${result.replayed_from} step.`);
    } catch (error) {
      if (!(error instanceof Unauthorized)) flash(`Replay refused: ${error.message}`, true);
    }
    render();
  });
}

async function renderRunPage(runId) {
  try {
    const run = await api(`/api/runs/${encodeURIComponent(runId)}`);
    state.runSettled = ["done", "failed", "expired"].includes(run.status) && !run.approvals.some((a) => a.status === "approved");
    renderRun(run);
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    $("#run-detail").innerHTML = `<div class="card"><h2>Run ${esc(runId)}</h2><p class="error">${esc(error.message)}</p></div>`;
  }
}

/* ------------------------------------------------------------------ evals page */

const EVAL_COLUMNS = [["root_cause_accuracy", "root cause"], ["key_evidence", "evidence"], ["action_match", "actions"],
  ["action_content", "action content"], ["recall", "recall"], ["precision", "precision"]];
function fmtRate(value) { return value === null || value === undefined ? "–" : `${Math.round(value * 1000) / 10}%`; }

function evalRow(run, baselines) {
  const pinned = baselines[run.suite] === run.id ? " ★" : "";
  const verdict = run.status === "failed" ? pill("failed") : run.regression ? pill("failed", "regression") : pill("done");
  const cells = EVAL_COLUMNS.map(([key]) => `<td class="num">${fmtRate(run.scores[key])}</td>`).join("");
  return `<tr data-eval-id="${esc(run.id)}"><td><code>${esc(run.id)}</code>${pinned}</td><td>${esc(run.suite)}</td>`
    + `<td>${esc(run.provider)}/${esc(run.model || "")}</td><td>${verdict}</td>${cells}`
    + `<td class="num">${esc(run.scores.forbidden_actions ?? "–")}</td><td class="num">${fmtRate(run.narrative_score)}</td>`
    + `<td>${esc(run.scores.scenarios_passed ?? "–")}/${esc(run.scores.scenarios ?? "–")}</td>`
    + `<td title="${esc(run.created_at)}">${esc(fmtTime(run.created_at))}</td><td class="error">${esc(run.error || "")}</td></tr>`;
}

async function renderEvals() {
  const data = await api("/api/evals");
  if (!data.runs.length) {
    $("#evals-history").innerHTML = `<p class="muted">No eval has run yet: <code>switchboard eval</code> runs one (beat runs it nightly).</p>`;
    $("#evals-latest").innerHTML = "";
    return;
  }
  const head = `<tr><th>Eval run</th><th>Suite</th><th>Provider/model</th><th>Result</th>`
    + EVAL_COLUMNS.map(([, label]) => `<th class="num">${esc(label)}</th>`).join("")
    + `<th class="num">forbidden</th><th class="num">narratives</th><th>passed</th><th>Created</th><th>Error</th></tr>`;
  const suites = [...new Set(data.runs.map((run) => run.suite))];
  $("#evals-history").innerHTML = suites.map((suite) => `<h3>${esc(suite)}</h3><div class="table-wrap"><table class="runs evals">`
    + `<thead>${head}</thead><tbody>${data.runs.filter((run) => run.suite === suite).map((run) => evalRow(run, data.baselines)).join("")}`
    + `</tbody></table></div>`).join("");
  const latest = data.runs.find((run) => run.status === "done");
  if (!latest) { $("#evals-latest").innerHTML = `<p class="muted">No eval run has finished yet.</p>`; return; }
  const detail = await api(`/api/evals/${encodeURIComponent(latest.id)}`);
  $("#evals-latest-title").textContent = `Latest run ${detail.id} (${detail.suite}) against ${detail.baseline_id ? `baseline ${detail.baseline_id}` : "no pinned baseline"}`;
  const order = { regressed: 0, changed: 1, improved: 2, new: 3, unchanged: 4 };
  const rows = [...detail.results].sort((a, b) => (order[a.diff?.change] ?? 5) - (order[b.diff?.change] ?? 5));
  $("#evals-latest").innerHTML = `<div class="table-wrap"><table class="runs evals-diff"><thead><tr><th>Scenario</th><th>Suite</th>`
    + `<th>Result</th><th>vs baseline</th><th>Changed</th><th>Problems</th></tr></thead><tbody>`
    + rows.map((r) => {
      const change = r.diff?.change || "–";
      const changed = r.diff ? [...(r.diff.gained || []).map((p) => `+ ${p}`), ...(r.diff.lost || []).map((p) => `− ${p}`),
        ...Object.entries(r.diff.fields || {}).map(([k, [a, b]]) => `${k}: ${a} → ${b}`)].join("; ") : "";
      return `<tr class="diff-${esc(change)}"><td>${esc(r.scenario)}</td><td>${esc(r.suite)}</td><td>${pill(r.passed ? "done" : "failed")}</td>`
        + `<td>${pill(change === "regressed" ? "failed" : change === "improved" ? "done" : "expired", "")}<span class="muted"> ${esc(change)}</span></td>`
        + `<td>${esc(changed)}</td><td>${esc(r.problems.join("; "))}</td></tr>`;
    }).join("") + `</tbody></table></div>`;
}

/* ------------------------------------------------------------------ insights page */

function fmtLeft(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const sign = seconds < 0 ? "overdue " : "", s = Math.abs(seconds);
  if (s >= 86400) return `${sign}${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${sign}${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${sign}${Math.floor(s / 60)}m`;
}

function triage(i) {
  if (i.quarantine_reason) return `quarantined: ${esc(i.quarantine_reason)}`;
  if (i.resolved_at) return `resolved by ${esc(i.resolved_by)} · ${esc(ago(i.resolved_at))}`;
  const parts = [];
  if (i.snoozed) parts.push(`snoozed until ${esc(fmtTime(i.snoozed_until))}`);
  if (i.acknowledged_by) parts.push(`acknowledged by ${esc(i.acknowledged_by)}`);
  return parts.join(" · ") || `<span class="muted">–</span>`;
}

async function renderInsights() {
  const status = $("#insight-filters").elements.status.value;
  const data = await api(`/api/insights?status=${encodeURIComponent(status)}`);
  const body = $("#insights-table tbody");
  if (!data.insights.length) { body.innerHTML = `<tr><td colspan="9" class="muted">No ${esc(status)} insights: nothing to work.</td></tr>`; return; }
  body.innerHTML = data.insights.map((i) => `
    <tr data-insight-id="${i.id}">
      <td>${pill(i.severity, `risk-${esc(i.severity)}`)}</td>
      <td><div>${esc(i.title)}</div><div class="muted">#${i.id} · ${esc(i.kind.replace(/_/g, " "))} · ${esc(i.entity)}</div></td>
      <td>${pill(i.status)}</td><td>${esc(fmtLeft(i.sla_left_s))}</td><td class="num">${fmtInt(i.occurrences)}</td>
      <td>${i.run_id ? `<a href="/dashboard/runs/${encodeURIComponent(i.run_id)}" data-run-link class="mono">${esc(i.run_id)}</a> ${i.run_status ? pill(i.run_status) : ""}` : "–"}</td>
      <td class="triage">${triage(i)}</td><td class="note">${esc(i.note || "")}</td>
      <td class="buttons">${i.resolved_at ? "" : `
        <button type="button" data-triage="acknowledge" data-insight="${i.id}" ${i.acknowledged_by ? "disabled" : ""}>Acknowledge</button>
        <button type="button" data-triage="snooze" data-insight="${i.id}">Snooze</button>
        <button type="button" data-triage="resolve" data-insight="${i.id}">Resolve</button>`}</td>
    </tr>`).join("");
}

const SNOOZE_UNITS_S = { m: 60, h: 3600, d: 86400, w: 604800 };
async function triageInsight(id, action) {
  let body = {};
  if (action === "snooze") {
    const answer = prompt("Snooze for how long? (30m, 2h, 1d, 1w)", "2h");
    if (answer === null) return;
    const match = answer.trim().match(/^(\d+)\s*([mhdw])$/i);
    if (!match) { flash(`"${answer}" is not a duration like 30m, 2h, 1d or 1w.`, true); return; }
    const until = new Date(Date.now() + Number(match[1]) * SNOOZE_UNITS_S[match[2].toLowerCase()] * 1000);
    body = { until: until.toISOString() };
  } else if (action === "resolve") {
    const note = prompt("What was done about it? (kept with the insight)");
    if (note === null) return;
    body = { note: note || null };
  }
  try {
    await api(`/api/insights/${id}/${action}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    flash(`Insight ${id}: ${action === "acknowledge" ? "acknowledged" : action === "snooze" ? "snoozed" : "resolved"}.`);
  } catch (error) {
    if (!(error instanceof Unauthorized)) flash(`Could not ${action} insight ${id}: ${error.message}`, true);
  }
  render();
}

/* ------------------------------------------------------------------ routing and refresh */

function currentRunId() {
  const match = location.pathname.match(/^\/dashboard\/runs\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

let rendering = false;
async function render() {
  if (rendering) return;
  rendering = true;
  const runId = currentRunId();
  const evals = location.pathname === "/dashboard/evals";
  const insightsPage = location.pathname === "/dashboard/insights";
  $("#overview-view").hidden = Boolean(runId) || evals || insightsPage;
  $("#run-view").hidden = !runId;
  $("#evals-view").hidden = !evals;
  $("#insights-view").hidden = !insightsPage;
  try {
    if (runId) await renderRunPage(runId);
    else if (evals) await renderEvals();
    else if (insightsPage) await renderInsights();
    else await renderOverview();
    await updateBadges();
    $("#refresh-state").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("#refresh-state").textContent = `update failed: ${error.message}`;
  } finally {
    rendering = false;
  }
}

function navigate(path) {
  history.pushState({}, "", path);
  window.scrollTo(0, 0);
  render();
}

function scheduleRefresh() {
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    const auto = $("#run-filters").elements.auto.checked;
    const dialogOpen = $("#key-dialog").open;
    // a run page refreshes only while the run is still moving (open payloads stay open)
    const settled = currentRunId() && state.runSettled;
    if (!dialogOpen && auto && !document.hidden && !settled) render();
  }, state.refreshS * 1000);
}

/* The link `switchboard standalone` prints carries its local operator key in the fragment
   (#key=…), which the browser never sends to a server: keep it, then drop it from the address. */
function takeKeyFromLink() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (!key) return;
  localStorage.setItem(KEY_STORAGE, key);
  history.replaceState(null, "", location.pathname + location.search);
}

async function start() {
  takeKeyFromLink();
  setupKeyDialog();
  try {
    const config = await (await fetch("/api/dashboard/config")).json();
    state.refreshS = config.refresh_s || 5;
    state.keyRequired = config.api_key_required;
    $("#key-button").hidden = !config.api_key_required;
    $("#key-local").hidden = !config.local_key;
    $("#key-configured").hidden = !!config.local_key;
  } catch (_) { /* the API answers below or reports why */ }
  document.addEventListener("click", (event) => {
    const decideButton = event.target.closest("[data-decide]");
    if (decideButton) { decide(decideButton.dataset.id, decideButton.dataset.decide, decideButton); return; }
    const evidenceLink = event.target.closest("a[data-evidence]");
    if (evidenceLink) { event.preventDefault(); showRecord(evidenceLink.dataset.evidence); return; }
    const triageButton = event.target.closest("[data-triage]");
    if (triageButton) { triageInsight(triageButton.dataset.insight, triageButton.dataset.triage); return; }
    const link = event.target.closest("a[data-run-link], a[data-nav]");
    if (link && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      navigate(link.getAttribute("href"));
      return;
    }
    const row = event.target.closest("tr[data-run-id]");
    if (row && !event.target.closest("a, button, details")) navigate(`/dashboard/runs/${encodeURIComponent(row.dataset.runId)}`);
  });
  $("#run-filters").addEventListener("change", () => render());
  $("#insight-filters").addEventListener("change", () => render());
  window.addEventListener("popstate", render);
  await render();
  if (location.hash === "#approvals") $("#approvals").scrollIntoView();
  scheduleRefresh();
}

start();
