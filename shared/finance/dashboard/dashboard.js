// The finance dashboard: plain JavaScript and inline SVG, no libraries and nothing fetched from outside the gateway
// (the deployed app has no internet egress). Every figure comes from /api/usage (the daily usage table) and quota
// status from /api/usage/budgets; requests go to the same origin with the browser's session (Easy Auth cookie) or,
// locally, developer sign-in.
"use strict";

const $ = (id) => document.getElementById(id);
const tokensText = (n) => Number(n).toLocaleString("en-US");
const moneyText = (cost, currency) => `${currency || "USD"} ${cost}`;

function utcMonth() {
  return new Date().toISOString().slice(0, 7);
}

function utcToday() {
  return new Date().toISOString().slice(0, 10);
}

function filters() {
  const params = new URLSearchParams();
  for (const name of ["caller", "cost_center", "deployment"]) {
    const value = $(name).value;
    if (value) params.set(name === "caller" ? "caller_id" : name, value);
  }
  return params;
}

async function usage(params) {
  const response = await fetch(`usage?${params}`, { credentials: "same-origin", headers: { accept: "application/json" } });
  if (response.status === 401) {
    window.location.href = `/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(window.location.pathname)}`;
    throw new Error("signing in");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  }
  return response.json();
}

function monthQuery(groupBy) {
  const params = filters();
  params.set("month", $("month").value);
  params.set("group_by", groupBy);
  return params;
}

function fillTable(id, rows, cells) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const [text, numeric, testid] of cells(row)) {
      const td = document.createElement("td");
      td.textContent = text; // textContent: names are data, never markup
      if (numeric) td.className = "n";
      if (testid) td.dataset.figure = testid;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function fillSelect(id, values) {
  const select = $(id);
  const keep = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const [value, label] of values) select.add(new Option(label, value));
  select.value = keep;
}

function chart(days, month) {
  const [year, mon] = month.split("-").map(Number);
  const count = new Date(Date.UTC(year, mon, 0)).getUTCDate();
  const byDay = new Map(days.map((d) => [d.day, d]));
  const series = Array.from({ length: count }, (_, i) => {
    const day = `${month}-${String(i + 1).padStart(2, "0")}`;
    const row = byDay.get(day);
    return { day, cost: row ? Number(row.cost) : 0, tokens: row ? row.total_tokens : 0 };
  });
  const width = 900, height = 240, left = 60, bottom = 24, top = 10;
  const maxCost = Math.max(...series.map((s) => s.cost), 1e-9);
  const maxTokens = Math.max(...series.map((s) => s.tokens), 1);
  const step = (width - left) / count;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const add = (name, attrs, text) => {
    const el = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  const plot = height - bottom - top;
  let path = "";
  series.forEach((s, i) => {
    const h = (s.cost / maxCost) * plot;
    const bar = add("rect", { class: "bar", x: left + i * step + 1, y: top + plot - h, width: Math.max(step - 2, 1), height: h });
    bar.appendChild(document.createElementNS(ns, "title")).textContent = `${s.day}: cost ${s.cost}, ${tokensText(s.tokens)} tokens`;
    const y = top + plot - (s.tokens / maxTokens) * plot;
    path += `${i ? "L" : "M"}${left + i * step + step / 2},${y}`;
    if (i % 5 === 0) add("text", { class: "axis", x: left + i * step, y: height - 6 }, s.day.slice(5));
  });
  add("path", { class: "line", d: path });
  add("text", { class: "axis", x: 0, y: top + 10 }, `cost ${maxCost.toPrecision(3)}`);
  add("text", { class: "axis", x: 0, y: top + 24 }, `tokens ${tokensText(maxTokens)}`);
  $("chart").replaceChildren(svg);
}

async function budgets(callers) {
  const params = new URLSearchParams({ month: $("month").value });
  const caller = $("caller").value;
  if (caller) params.set("caller_id", caller);
  const response = await fetch(`usage/budgets?${params}`, { credentials: "same-origin" });
  if (!response.ok) return [];
  const body = await response.json();
  const rows = [];
  for (const entry of body.data) {
    for (const [limit, status] of Object.entries(entry.limits)) {
      rows.push({ caller: entry.caller_name || entry.caller_id, limit, used: status.used, max: status.limit });
    }
  }
  return rows;
}

async function load() {
  const month = $("month").value;
  $("status").textContent = "Loading…";
  try {
    const [byDay, byCaller, byCostCenter, byDeployment, all, today] = await Promise.all([
      usage(monthQuery("day")),
      usage(monthQuery("caller")),
      usage(monthQuery("cost_center")),
      usage(monthQuery("deployment")),
      usage(monthQuery("")),
      usage(new URLSearchParams([...filters(), ["from", utcToday()], ["to", utcToday()], ["group_by", ""]])),
    ]);
    const totals = all.totals;
    $("month-cost").textContent = moneyText(totals.cost, totals.currency);
    $("month-cost").dataset.value = totals.cost;
    $("month-tokens").textContent = tokensText(totals.total_tokens);
    $("month-tokens").dataset.value = totals.total_tokens;
    $("month-requests").textContent = tokensText(totals.requests);
    $("month-requests").dataset.value = totals.requests;
    $("today-cost").textContent = moneyText(today.totals.cost, today.totals.currency);
    $("today-cost").dataset.value = today.totals.cost;
    $("today-tokens").textContent = `${tokensText(today.totals.total_tokens)} tokens, ${tokensText(today.totals.requests)} requests`;
    $("today-tokens").dataset.value = today.totals.total_tokens;
    chart(byDay.data, month);
    const spenders = [...byCaller.data].sort((a, b) => Number(b.cost) - Number(a.cost)).slice(0, 10);
    fillTable("top-spenders", spenders, (r) => [
      [r.caller_name || r.caller_id, false, "spender-name"],
      [r.cost_center, false],
      [tokensText(r.total_tokens), true, "spender-tokens"],
      [r.cost, true, "spender-cost"],
    ]);
    fillTable("cost-centers", byCostCenter.data, (r) => [
      [r.cost_center || "(none)", false, "cost-center-name"],
      [tokensText(r.total_tokens), true],
      [r.cost, true, "cost-center-cost"],
    ]);
    fillTable("deployments", byDeployment.data, (r) => [
      [r.deployment, false, "deployment-name"],
      [tokensText(r.total_tokens), true],
      [r.cost, true, "deployment-cost"],
    ]);
    if (!$("caller").value && !$("cost_center").value && !$("deployment").value) {
      fillSelect("caller", byCaller.data.map((r) => [r.caller_id, r.caller_name || r.caller_id]));
      fillSelect("cost_center", byCostCenter.data.filter((r) => r.cost_center).map((r) => [r.cost_center, r.cost_center]));
      fillSelect("deployment", byDeployment.data.map((r) => [r.deployment, r.deployment]));
    }
    const burn = await budgets(byCaller.data);
    fillTable("budgets", burn, (r) => [
      [r.caller, false],
      [r.limit.replaceAll("_", " "), false],
      [String(r.used), true],
      [String(r.max), true],
      [`${r.max ? Math.min(100, Math.round((Number(r.used) / Number(r.max)) * 100)) : 0}%`, false, "burn"],
    ]);
    $("status").textContent = `Showing ${month} (UTC). ${byCaller.data.length} callers.`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("status").textContent = `Could not load usage: ${error.message}`;
    document.body.dataset.loaded = "error";
  }
}

$("month").value = new URLSearchParams(window.location.search).get("month") || utcMonth();
$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
load();
