// dlrq console: the overview refreshes itself; tables sort by a column. No build step, no framework,
// no inline script (the pages' Content-Security-Policy allows none): what a page needs is in the
// data attributes of the script element that loads this file.
"use strict";

const dlrqNumber = new Intl.NumberFormat("en");

function dlrqFormat(kind, value) {
  if (value === null || value === undefined) return "–";
  if (kind === "percent") return (value * 100).toFixed(1) + "%";
  if (kind === "seconds") {
    if (value < 10) return value.toFixed(1) + " s";
    if (value < 120) return value.toFixed(0) + " s";
    if (value < 7200) return (value / 60).toFixed(0) + " min";
    return (value / 3600).toFixed(1) + " h";
  }
  return dlrqNumber.format(value);
}

function dlrqChart(element, series) {
  const css = getComputedStyle(document.documentElement);
  const line = (label, colour) => ({label, stroke: css.getPropertyValue(colour).trim(), width: 2,
                                    value: (u, v) => v === null ? "–" : v.toFixed(2) + "/s"});
  // UTC, on a 24-hour clock, as every table of the console.
  const utc = t => new Date(t * 1000).toISOString();
  const options = {
    width: Math.max(280, element.clientWidth), height: 220,
    series: [{label: "UTC", value: (u, t) => t == null ? "–" : utc(t).slice(0, 19).replace("T", " ")},
             line("acknowledged", "--accepted"), line("applied new", "--new"), line("resends", "--resend")],
    axes: [{values: (u, splits) => splits.map(t => utc(t).slice(11, 16)), label: "UTC"},
           {label: "receipts/s", size: 60}],
    scales: {y: {range: (u, min, max) => [0, Math.max(1, max)]}},
  };
  const chart = new uPlot(options, dlrqColumns(series), element);
  new ResizeObserver(() => chart.setSize({width: Math.max(280, element.clientWidth), height: 220})).observe(element);
  return chart;
}

function dlrqColumns(series) {
  return [series.t, series.accepted, series.new, series.resend];
}

function dlrqText(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

function dlrqLatest(series) {
  // The last full bucket: the current one is still filling.
  const i = Math.max(0, series.t.length - 2);
  return {accepted: series.accepted[i], new: series.new[i], resend: series.resend[i]};
}

function dlrqRefresh(state, charts) {
  for (const [name, queue] of Object.entries(state.queues)) {
    const row = document.querySelector(`#queues tr[data-queue="${CSS.escape(name)}"]`);
    if (!row) continue;
    for (const cell of row.querySelectorAll("[data-field]")) {
      const field = cell.dataset.field;
      const text = dlrqFormat(field === "oldest_age" ? "seconds" : "number", queue[field]);
      if (field === "failed" && queue[field] > 0) {
        const link = document.createElement("a");
        link.href = "failed";
        link.textContent = text;
        cell.replaceChildren(link);
      } else cell.textContent = text;
    }
  }
  for (const cell of document.querySelectorAll("#today [data-field]")) {
    const field = cell.dataset.field;
    cell.textContent = dlrqFormat(/rate|ratio/.test(field) ? "percent" : "number", state.today[field]);
  }
  const readiness = document.getElementById("readiness");
  readiness.className = state.readiness ? "problem" : "ok";
  readiness.textContent = state.readiness ? "Redis: " + state.readiness
                                          : `Redis takes receipts (maxmemory-policy ${state.policy}).`;
  const alerts = document.getElementById("alerts");
  alerts.replaceChildren(...(state.alerts.length ? state.alerts.map(dlrqAlert) : [dlrqNone()]));
  const latest = dlrqLatest(state.throughput);
  for (const field of ["accepted", "new", "resend"]) dlrqText("rate-" + field, latest[field].toFixed(2));
  charts.hour.setData(dlrqColumns(state.throughput));
  if (charts.day) charts.day.setData(dlrqColumns(state.day));
  else charts.day = dlrqChart(document.getElementById("chart-day"), state.day);
}

function dlrqAlert(alert) {
  const item = document.createElement("li");
  const kind = document.createElement("strong");
  kind.textContent = alert.kind;
  item.append(kind, ` ${alert.raised_at.replace("T", " ").slice(0, 19)} UTC — `);
  if (alert.message) {
    const link = document.createElement("a");
    link.href = "messages?q=" + encodeURIComponent(alert.message);
    link.textContent = alert.message;
    item.append(link, " ");
  }
  if (alert.status) item.append(`part ${alert.status} `);
  if (alert.network_code) item.append(`network ${alert.network_code} `);
  if (alert.err_code) item.append(`err-code ${alert.err_code}` + (alert.err_meaning ? ` (${alert.err_meaning})` : ""));
  return item;
}

function dlrqNone() {
  const item = document.createElement("li");
  item.className = "muted";
  item.textContent = "None.";
  return item;
}

function dlrqOverview(url, hourSeries) {
  const charts = {hour: dlrqChart(document.getElementById("chart-hour"), hourSeries), day: null};
  const latest = dlrqLatest(hourSeries);
  for (const field of ["accepted", "new", "resend"]) dlrqText("rate-" + field, latest[field].toFixed(2));
  async function poll() {
    try {
      const answer = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (answer.redirected || answer.status === 401) { window.location.reload(); return; }
      const state = await answer.json();
      if (!answer.ok) throw new Error(state.detail || answer.statusText);
      dlrqRefresh(state, charts);
      dlrqText("updated", "updated " + new Date().toISOString().slice(11, 19) + " UTC");
    } catch (problem) {
      dlrqText("updated", "could not refresh: " + problem.message);
    }
  }
  poll();
  setInterval(poll, 5000);
}

function dlrqSortable(tableId) {
  const table = document.getElementById(tableId);
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((header, column) => {
    const button = header.querySelector("button[data-sort]");
    if (!button) return;
    button.addEventListener("click", () => {
      const descending = header.getAttribute("aria-sort") !== "descending";
      const numeric = button.dataset.sort === "number";
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).filter((row) => row.cells.length > column);
      const key = (row) => {
        const value = row.cells[column].dataset.value ?? row.cells[column].textContent;
        return numeric ? Number(value) : value.toLowerCase();
      };
      rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (descending ? -1 : 1));
      body.append(...rows);
      headers.forEach((other) => other.setAttribute("aria-sort", "none"));
      header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    });
  });
}

(function start() {
  const script = document.currentScript;
  if (!script) return;
  if (script.dataset.overview) dlrqOverview(script.dataset.overview, JSON.parse(script.dataset.series));
  if (script.dataset.sortable) dlrqSortable(script.dataset.sortable);
})();
