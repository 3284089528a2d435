// Live updates: one WebSocket to /api/v1/ws (cookie-authenticated). When it drops,
// the page polls the REST endpoints every 10 s and reconnects with exponential
// backoff (1 s … 30 s); once connected again, polling stops, and the page asks for
// what it missed: {"type":"resume","generation":n}, n the last generation it saw. Any
// replica answers with the differences since n, or with "resync" when n is too old
// (then the page reloads its lists once).
//
// Messages update the page in place: job rows ([data-job-id]), node tiles
// ([data-node]), summary numbers ([data-summary]), partition rows ([data-partition])
// and the bell ([data-testid="unread-count"]). Pages add their own handlers with
// on(type, fn), channels with subscribe(channel) and pollers with addPoller(fn).

import { api, formatDate, formatNumber, t, username } from "./core.js";

const POLL_MS = 10_000;
const PING_MS = 25_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
const BASE_CHANNELS = ["jobs", "nodes", "cluster", "notifications"];

const handlers = new Map();
const channels = new Set(BASE_CHANNELS);
const pollers = [];
let socket = null;
let connected = false;
let attempt = 0;
let reconnectTimer = 0;
let pollTimer = 0;
let pingTimer = 0;
let lastJobsGeneration = -1;
/**
 * The newest snapshot generation any message carried (one sequence across replicas).
 * It starts at the generation the page was drawn from (body data-generation), so the
 * first connection resumes from there: a refresh between drawing the page and
 * subscribing reaches the page instead of being missed.
 */
let lastGeneration = drawnGeneration();
let started = false;

function drawnGeneration() {
  const value = Number(document.body?.dataset.generation);
  return Number.isInteger(value) && value >= 0 ? value : -1;
}

/** Call fn(message) for every message of this type. */
export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}

/** Follow one more channel (e.g. "job_output:123"), now and after reconnects. */
export function subscribe(channel) {
  channels.add(channel);
  if (connected) send({ type: "subscribe", channels: [channel] });
}

/** Run fn() every 10 s while the socket is down (and once when it drops). */
export function addPoller(fn) {
  pollers.push(fn);
}

export function isConnected() {
  return connected;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function setStatus(key) {
  const box = document.getElementById("live-status");
  if (!box) return;
  box.textContent = key ? t(key) : "";
  box.dataset.state = key ? key.split(".")[1] : "connected";
}

function dispatch(message) {
  for (const fn of handlers.get(message.type) || []) {
    try {
      fn(message);
    } catch (error) {
      console.error("live handler failed", error);
    }
  }
}

function connect() {
  clearTimeout(reconnectTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let ws;
  try {
    ws = new WebSocket(`${scheme}//${location.host}/api/v1/ws`);
  } catch {
    scheduleReconnect();
    return;
  }
  socket = ws;
  ws.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === "hello") {
      connected = true;
      attempt = 0;
      stopPolling();
      setStatus("");
      send({ type: "subscribe", channels: [...channels] });
      if (lastGeneration >= 0) send({ type: "resume", generation: lastGeneration });
      clearInterval(pingTimer);
      pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
    }
    if (typeof message.generation === "number" && message.generation > lastGeneration) {
      lastGeneration = message.generation;
    }
    dispatch(message);
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    connected = false;
    clearInterval(pingTimer);
    startPolling();
    scheduleReconnect();
  });
  ws.addEventListener("error", () => {
    // A "close" follows every "error"; that is where we react.
  });
}

function scheduleReconnect() {
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  attempt += 1;
  const jitter = delay * 0.2 * Math.random();
  setStatus(attempt > 1 ? "live.polling" : "live.reconnecting");
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, delay + jitter);
}

function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = 0;
}

async function poll() {
  if (document.hidden) return;
  for (const fn of pollers) {
    try {
      await fn();
    } catch (error) {
      if (error && error.status === 401) return; // api() is already on its way to /login
    }
  }
}

/** Start the socket (once per page). Call after the page's own on()/subscribe(). */
export function start() {
  if (started || !username) return;
  started = true;
  installDefaultHandlers();
  connect();
  window.addEventListener("online", () => {
    if (!connected) connect();
  });
}

// --- Updating the page in place ---------------------------------------------------------

function jobStatusLabel(status) {
  return t(`job_status.${status}`);
}

/** Update every row and state cell of one job; true when something on the page showed it. */
export function applyJob(job) {
  let found = false;
  for (const row of document.querySelectorAll(`[data-job-id="${CSS.escape(job.id)}"]`)) {
    found = true;
    const badge = row.querySelector('[data-testid="job-state"]');
    if (badge && badge.dataset.status !== job.status) {
      badge.dataset.status = job.status;
      badge.className = `state state-${job.status}`;
      badge.textContent = jobStatusLabel(job.status);
      badge.title = job.state || "";
      if (row.tagName === "TR") {
        row.classList.remove("flash");
        void row.offsetWidth;
        row.classList.add("flash");
      }
    }
    const where = row.querySelector('[data-field="where"]');
    if (where) where.textContent = (row.tagName === "TR" ? job.nodes || job.reason : job.nodes) || "—";
    const reason = row.querySelector('[data-field="reason"]');
    if (reason && job.reason) reason.textContent = job.reason;
    for (const field of ["submit_time", "start_time", "end_time"]) {
      const time = row.querySelector(`time[data-field="${field}"]`);
      if (time && job[field] !== undefined) {
        time.dateTime = job[field] || "";
        time.textContent = formatDate(job[field], row.tagName !== "TR");
      }
    }
    const state = row.querySelector('[data-field="state"]');
    if (state && job.state) state.textContent = job.state;
  }
  if (found) document.dispatchEvent(new CustomEvent("hpcportal:job", { detail: job }));
  return found;
}

function markRemoved(id) {
  for (const row of document.querySelectorAll(`tr[data-job-id="${CSS.escape(id)}"]`)) {
    row.classList.add("gone");
  }
}

let refreshTimer = 0;

/** Re-read the jobs list or the "my jobs" widget when jobs came or went (debounced). */
function refreshJobLists() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (!window.htmx) return;
    const results = document.getElementById("jobs-results");
    if (results) {
      window.htmx.ajax("GET", location.pathname + location.search, {
        target: "#jobs-results",
        swap: "outerHTML",
      });
    }
    const widget = document.querySelector('[data-widget="my_jobs"] .widget-body');
    if (widget) {
      window.htmx.ajax("GET", "/partials/widgets/my_jobs", {
        target: widget,
        select: ".widget-body > *",
        swap: "innerHTML",
      });
    }
  }, 500);
}

function wantsJob(job) {
  if (document.getElementById("jobs-results")) {
    const scope = new URLSearchParams(location.search).get("scope");
    return scope === "all" || job.user === username;
  }
  if (document.querySelector('[data-widget="my_jobs"]')) return job.user === username;
  return false;
}

function onJobs(message) {
  if (typeof message.generation === "number") {
    if (message.generation <= lastJobsGeneration) return;
    lastJobsGeneration = message.generation;
  }
  let refresh = false;
  for (const job of message.changed || []) {
    if (!applyJob(job) && wantsJob(job)) refresh = true;
  }
  for (const id of message.removed || []) markRemoved(id);
  if (refresh) refreshJobLists();
}

function applyNode(node) {
  for (const tile of document.querySelectorAll(`[data-node="${CSS.escape(node.name)}"]`)) {
    const label = t(`node_status.${node.status}`);
    tile.className = `tile state-${node.status}`;
    const state = tile.querySelector('[data-field="status"]');
    if (state) state.textContent = label;
    const fill = tile.querySelector('[data-field="load"]');
    const load = node.cpus_total ? Math.round((100 * node.cpus_allocated) / node.cpus_total) : 0;
    if (fill) fill.style.height = `${load}%`;
    const cpus = t("node.cpus", { used: node.cpus_allocated, total: node.cpus_total });
    tile.setAttribute("aria-label", `${node.name}: ${label}, ${cpus}`);
    tile.title = `${node.name} · ${label} · ${cpus}`;
  }
}

function onNodes(message) {
  for (const node of message.changed || []) applyNode(node);
}

function lookup(object, path) {
  return path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), object);
}

function applySummary(summary) {
  for (const element of document.querySelectorAll("[data-summary]")) {
    const value = lookup(summary, element.dataset.summary);
    element.textContent = formatNumber(value ?? 0);
  }
  for (const bar of document.querySelectorAll("[data-summary-bar]")) {
    const capacity = summary[bar.dataset.summaryBar];
    if (capacity) {
      const pct = capacity.total ? (100 * capacity.allocated) / capacity.total : 0;
      bar.style.width = `${pct.toFixed(1)}%`;
    }
  }
  for (const load of summary.partitions || []) {
    const name = load.partition && load.partition.name;
    if (!name) continue;
    for (const row of document.querySelectorAll(`[data-partition="${CSS.escape(name)}"]`)) {
      const fill = row.querySelector(".bar-fill");
      const pct = load.cpus.total ? (100 * load.cpus.allocated) / load.cpus.total : 0;
      if (fill) fill.style.width = `${pct.toFixed(1)}%`;
      const numbers = row.querySelector(".pl-numbers");
      if (numbers) {
        const cpus = t("partition.cpus", {
          used: formatNumber(load.cpus.allocated),
          total: formatNumber(load.cpus.total),
        });
        const jobs = t("partition.jobs", {
          running: formatNumber(load.jobs_running),
          pending: formatNumber(load.jobs_pending),
        });
        numbers.textContent = `${cpus} · ${jobs}`;
      }
      const cpuCell = row.querySelector('[data-field="cpus"]');
      if (cpuCell) {
        cpuCell.textContent = `${formatNumber(load.cpus.allocated)} / ${formatNumber(load.cpus.total)}`;
      }
      const running = row.querySelector('[data-field="running"]');
      if (running) running.textContent = formatNumber(load.jobs_running);
      const pending = row.querySelector('[data-field="pending"]');
      if (pending) pending.textContent = formatNumber(load.jobs_pending);
    }
  }
}

function onCluster(message) {
  if (message.summary) applySummary(message.summary);
}

// --- Polling fallbacks ---------------------------------------------------------------------

async function pollJobs() {
  const detail = document.querySelector('[data-testid="job-detail"][data-job-id]');
  if (detail) {
    const data = await api(`/api/v1/jobs/${encodeURIComponent(detail.dataset.jobId)}`);
    if (data && data.job) applyJob(data.job);
    return;
  }
  if (document.getElementById("jobs-results")) {
    refreshJobLists();
    return;
  }
  if (!document.querySelector("tr[data-job-id]")) return;
  const query = new URLSearchParams({
    user: username,
    sort: "-submit_time",
    limit: "200",
    arrays: "collapsed",
  });
  const page = await api(`/api/v1/jobs?${query}`);
  onJobs({ type: "jobs", changed: page.items || [], removed: [] });
}

async function pollCluster() {
  if (!document.querySelector("[data-summary], [data-partition]")) return;
  applySummary(await api("/api/v1/cluster"));
}

async function pollNodes() {
  if (!document.querySelector("[data-node]")) return;
  const data = await api("/api/v1/nodes");
  onNodes({ type: "nodes", changed: data.items || [], removed: [] });
}

function installDefaultHandlers() {
  on("jobs", onJobs);
  on("nodes", onNodes);
  on("cluster", onCluster);
  // Too long away to catch up from a generation: read everything once, as a poll does.
  on("resync", () => {
    poll();
    refreshJobLists();
  });
  addPoller(pollJobs);
  addPoller(pollCluster);
  addPoller(pollNodes);
}
