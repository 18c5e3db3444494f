// The finance dashboard: plain JavaScript and inline SVG, no libraries and nothing fetched from outside the gateway
// (the deployed app has no internet egress). Every figure comes from /api/usage (the daily usage table) and budget
// use from /api/usage/budgets, always for the selected month; requests go to the same origin with the browser's
// session (Easy Auth cookie) or, locally, developer sign-in. Names are data: they are set with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const TOP = 10; // top spenders listed; the rest are one "Others" line
const FILTERS = ["caller", "cost_center", "department", "owner", "tag", "deployment"];
let currency = "USD"; // the gateway's one billing currency, as the API reports it

const count = (n) => Number(n).toLocaleString("en-US");

// Money to the cent with its currency and thousands separators; the exact amount is in the title (hover) and in
// data-value; tiny non-zero amounts never read as 0.
function money(cost, code = currency) {
  const n = Number(cost);
  if (n > 0 && n < 0.005) return `${code} <0.01`;
  return `${code} ${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

const LIMIT_NAMES = { tokens_per_month: "Tokens / month", cost_usd_per_month: "Cost / month", tokens_per_day: "Tokens, busiest day" };

function showMoney(element, row) {
  element.replaceChildren(money(row.cost));
  element.title = `${row.cost} ${currency} (exact)`;
  element.dataset.value = row.cost;
  if (row.unpriced_requests > 0) {
    // Unpriced usage is never shown as free: the cost excludes it, and the badge says so.
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "unpriced";
    badge.title = `${count(row.unpriced_requests)} requests have no price: their cost is not included`;
    element.append(" ", badge);
  }
}

// Images and audio in their own units (images, seconds of audio, characters of speech), "" for text deployments.
function mediaUnits(row) {
  const parts = [];
  if (row.images) parts.push(`${count(row.images)} images`);
  if (row.audio_seconds && Number(row.audio_seconds) > 0) parts.push(`${count(row.audio_seconds)} s of audio`);
  if (row.characters) parts.push(`${count(row.characters)} characters`);
  return parts.join(", ");
}

function utcMonth() {
  return new Date().toISOString().slice(0, 7);
}

function lastDayOf(month) {
  const [year, mon] = month.split("-").map(Number);
  return `${month}-${String(new Date(Date.UTC(year, mon, 0)).getUTCDate()).padStart(2, "0")}`;
}

function filters() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = $(name).value;
    if (value) params.set(name === "caller" ? "caller_id" : name, value);
  }
  return params;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
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

const usage = (params) => getJson(`usage?${params}`);

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
    if (row.others) tr.className = "others";
    for (const [content, numeric, testid] of cells(row)) {
      const td = document.createElement("td");
      if (typeof content === "function") content(td);
      else td.textContent = content;
      if (numeric) td.className = "n";
      if (testid) td.dataset.figure = testid;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

const moneyCell = (row) => (td) => showMoney(td, row);

function fillSelect(id, values) {
  const select = $(id);
  const keep = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const [value, label] of values) select.add(new Option(label, value));
  select.value = keep;
}

function chart(days, month) {
  const count_ = Number(lastDayOf(month).slice(8));
  const byDay = new Map(days.map((d) => [d.day, d]));
  const series = Array.from({ length: count_ }, (_, i) => {
    const day = `${month}-${String(i + 1).padStart(2, "0")}`;
    const row = byDay.get(day);
    return { day, cost: row ? Number(row.cost) : 0, exact: row ? row.cost : "0", tokens: row ? row.total_tokens : 0 };
  });
  const width = 900, height = 240, left = 70, bottom = 24, top = 10;
  const maxCost = Math.max(...series.map((s) => s.cost), 1e-9);
  const maxTokens = Math.max(...series.map((s) => s.tokens), 1);
  const step = (width - left) / count_;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
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
    bar.appendChild(document.createElementNS(ns, "title")).textContent =
      `${s.day}: ${money(s.exact)} (exact ${s.exact}), ${count(s.tokens)} tokens`;
    const y = top + plot - (s.tokens / maxTokens) * plot;
    path += `${i ? "L" : "M"}${left + i * step + step / 2},${y}`;
    if (i % 5 === 0 && i < count_ - 2) add("text", { class: "axis", x: left + i * step, y: height - 6 }, s.day.slice(5));
  });
  add("path", { class: "line", d: path });
  add("text", { class: "axis", x: 0, y: top + 10 }, money(maxCost));
  add("text", { class: "axis", x: 0, y: top + 24 }, `${count(maxTokens)} tok`);
  $("chart").replaceChildren(svg);
}

// Top N by cost, then one "Others" line summing the rest (so the table adds up to the month).
function topWithOthers(rows) {
  const ranked = [...rows].sort((a, b) => Number(b.cost) - Number(a.cost));
  if (ranked.length <= TOP) return ranked;
  const rest = ranked.slice(TOP);
  const others = { others: true, caller_name: `Others (${rest.length} callers)`, cost_center: "", total_tokens: 0, unpriced_requests: 0 };
  let cents = 0n; // exact decimal sum of the rest: add as scaled integers
  const scale = Math.max(...rest.map((r) => (r.cost.split(".")[1] || "").length));
  for (const r of rest) {
    const [whole, fraction = ""] = r.cost.split(".");
    cents += BigInt(whole + fraction.padEnd(scale, "0"));
    others.total_tokens += r.total_tokens;
    others.unpriced_requests += r.unpriced_requests;
  }
  const digits = cents.toString().padStart(scale + 1, "0");
  others.cost = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}`.replace(/\.?0+$/, "") || "0" : digits;
  return [...ranked.slice(0, TOP), others];
}

function budgetRows(body) {
  const rows = [];
  for (const entry of body.data) {
    for (const [limit, status] of Object.entries(entry.limits)) {
      if (limit === "deployments") continue;
      rows.push({ caller: entry.caller_name || entry.caller_id, name: limit, used: status.used, max: status.limit, percent: status.percent });
    }
  }
  return rows;
}

function burnCell(row) {
  return (td) => {
    const meter = document.createElement("meter");
    const percent = row.percent === null || row.percent === undefined ? 0 : row.percent;
    meter.min = 0;
    meter.max = 100;
    meter.low = 80;
    meter.high = 99.9;
    meter.optimum = 0;
    meter.value = Math.min(100, percent);
    meter.title = `${percent}% of the limit`;
    td.append(meter, ` ${percent}%`);
    td.dataset.value = String(percent);
  };
}

function exportLinks() {
  const view = filters();
  view.set("month", $("month").value);
  const csv = new URLSearchParams([...view, ["group_by", "caller,deployment,day"], ["format", "csv"]]);
  $("export-csv").href = `usage?${csv}`;
  $("export-excel").href = `usage?${csv}&bom=true`;
  $("export-focus").href = `usage?${new URLSearchParams([...view, ["format", "focus"], ["bom", "true"]])}`;
}

async function load() {
  const month = $("month").value;
  const current = month === utcMonth();
  const day = current ? new Date().toISOString().slice(0, 10) : lastDayOf(month);
  const group = $("group").value;
  $("status").textContent = "Loading…";
  exportLinks();
  try {
    const [byDay, byCaller, byGroup, byDeployment, all, oneDay, budgets] = await Promise.all([
      usage(monthQuery("day")),
      usage(monthQuery("caller")),
      usage(monthQuery(group)),
      usage(monthQuery("deployment")),
      usage(monthQuery("")),
      usage(new URLSearchParams([...filters(), ["from", day], ["to", day], ["group_by", ""]])),
      getJson(`usage/budgets?${new URLSearchParams([["month", month], ...($("caller").value ? [["caller_id", $("caller").value]] : [])])}`).catch(() => null),
    ]);
    const totals = all.totals;
    currency = (totals.currency || oneDay.totals.currency || currency).split(",")[0];
    for (const [id, text] of [["month-cost-title", "Cost"], ["month-tokens-title", "Tokens"], ["month-requests-title", "Requests"]]) {
      $(id).textContent = `${text} in ${month}`;
    }
    $("chart-title").textContent = `Cost and tokens per day, ${month}`;
    $("budgets-title").textContent = `Budget burn in ${month}`;
    $("day-title").textContent = current ? "Today so far (UTC)" : `Last day, ${day}`;
    showMoney($("month-cost"), totals);
    $("month-tokens").textContent = count(totals.total_tokens);
    $("month-tokens").dataset.value = totals.total_tokens;
    $("month-requests").textContent = count(totals.requests);
    $("month-requests").dataset.value = totals.requests;
    showMoney($("today-cost"), oneDay.totals);
    $("today-tokens").textContent = `${count(oneDay.totals.total_tokens)} tokens, ${count(oneDay.totals.requests)} requests`;
    $("today-tokens").dataset.value = oneDay.totals.total_tokens;
    const note = $("unpriced-note");
    note.hidden = !(totals.unpriced_requests > 0);
    note.textContent = `${count(totals.unpriced_requests)} requests in ${month} used a deployment without a price: their cost is not included in any figure (marked "unpriced").`;
    chart(byDay.data, month);
    fillTable("top-spenders", topWithOthers(byCaller.data), (r) => [
      [r.caller_name || r.caller_id, false, r.others ? "spender-others" : "spender-name"],
      [r.cost_center || "", false],
      [count(r.total_tokens), true, r.others ? null : "spender-tokens"],
      [moneyCell(r), true, r.others ? "others-cost" : "spender-cost"],
    ]);
    const label = $("group").selectedOptions[0].textContent;
    $("groups-title").textContent = `By ${label.toLowerCase()}`;
    $("groups-column").textContent = label;
    fillTable("cost-centers", byGroup.data, (r) => [
      [r[group] || "(none)", false, "cost-center-name"],
      [count(r.total_tokens), true],
      [moneyCell(r), true, "cost-center-cost"],
    ]);
    // A deployment with neither tokens nor cost (only refused calls, e.g. a mistyped name the upstream answered
    // 404) is not a cost line.
    const costLines = byDeployment.data.filter((r) => r.total_tokens > 0 || Number(r.cost) !== 0 || mediaUnits(r));
    const hidden = byDeployment.data.length - costLines.length;
    $("hidden-deployments").hidden = hidden === 0;
    $("hidden-deployments").textContent = `${hidden} deployment(s) with only failed calls and no usage are not listed.`;
    fillTable("deployments", costLines, (r) => [
      [r.deployment, false, "deployment-name"],
      [count(r.total_tokens), true],
      [mediaUnits(r), true, "deployment-units"],
      [moneyCell(r), true, "deployment-cost"],
    ]);
    if (!FILTERS.some((name) => $(name).value)) {
      fillSelect("caller", byCaller.data.map((r) => [r.caller_id, r.caller_name || r.caller_id]));
      const distinct = (key) => [...new Set(byCaller.data.map((r) => r[key]).filter(Boolean))].sort().map((v) => [v, v]);
      fillSelect("cost_center", distinct("cost_center"));
      fillSelect("department", distinct("department"));
      fillSelect("owner", distinct("owner"));
      const tags = new Set();
      for (const r of byCaller.data) for (const [k, v] of Object.entries(r.tags || {})) tags.add(`${k}:${v}`);
      fillSelect("tag", [...tags].sort().map((t) => [t, t]));
      const names = [...new Set([...tags].map((t) => t.split(":")[0]))].sort();
      const groupSelect = $("group");
      const keep = groupSelect.value;
      while (groupSelect.options.length > 3) groupSelect.remove(3);
      for (const name of names) groupSelect.add(new Option(`Tag ${name}`, `tag:${name}`));
      groupSelect.value = keep;
      fillSelect("deployment", costLines.map((r) => [r.deployment, r.deployment]));
    }
    const burn = budgets ? budgetRows(budgets) : [];
    const cost = (r, value) => (r.name === "cost_usd_per_month" ? money(value, "USD") : count(value));
    fillTable("budgets", burn, (r) => [
      [r.caller, false],
      [LIMIT_NAMES[r.name] || r.name.replaceAll("_", " "), false],
      [cost(r, r.used), true],
      [cost(r, r.max), true],
      [burnCell(r), false, "burn"],
    ]);
    $("budgets-note").textContent = budgets ? `Use in ${month} from the daily usage table, against the limits in force now (limits are not versioned).` : "Budgets could not be loaded.";
    $("status").textContent = `Showing ${month} (UTC). ${byCaller.data.length} callers.`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("status").textContent = `Could not load usage: ${error.message}`;
    document.body.dataset.loaded = "error";
  }
  document.body.dataset.width = String(document.documentElement.scrollWidth); // the layout test reads it
}

const query = new URLSearchParams(window.location.search);
$("month").value = query.get("month") || utcMonth();
$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
load();
