// Graphs on the node detail (uPlot): the node's panels from /api/v1/monitoring, the last
// hour; on the job detail (data-job-graphs) the job's panels: its nodes over its
// lifetime, GPU panels for its own GPUs (none for a job without GPUs). The server fills
// in every label; a panel no exporter provides says so instead
// of an empty chart, and Prometheus being down leaves the page as it is, with a note.

import { api, formatNumber, lang, t } from "./core.js";

const uPlot = window.uPlot;
const timeLabel = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
const PALETTE = ["--accent", "--s-running", "--s-failed", "--s-completed", "--s-queued", "--s-timeout"];

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function formatValue(value, unit) {
  if (value === null || value === undefined) return "—";
  if (unit === "bytes" || unit === "bytes/s") {
    const steps = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = value;
    let i = 0;
    while (Math.abs(v) >= 1024 && i < steps.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${formatNumber(v, v < 10 && i ? 1 : 0)} ${steps[i]}${unit === "bytes/s" ? "/s" : ""}`;
  }
  if (unit === "percent") return `${formatNumber(value, 0)} %`;
  if (unit === "celsius") return `${formatNumber(value, 0)} °C`;
  if (unit === "count") return formatNumber(value, 0);
  if (unit === "watts") return `${formatNumber(value, 0)} W`;
  return formatNumber(value, 2);
}

function title(panel) {
  const key = `graphs.${panel.name}`;
  const text = t(key);
  return text === key ? panel.title : text;
}

function note(box, text) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = text;
  box.append(p);
}

// Slurm events (job start and end; node drained, down, resumed) as dashed vertical
// marks across the plot, drawn after the series.
function markColour(kind) {
  if (kind === "job_end" || kind === "node_resume") return css("--s-completed");
  if (kind.startsWith("job")) return css("--s-running");
  return css("--s-failed");
}

function marks(events) {
  return {
    hooks: {
      draw: [
        (u) => {
          const { ctx, bbox } = u;
          ctx.save();
          ctx.setLineDash([5, 4]);
          ctx.lineWidth = 2;
          for (const e of events) {
            const x = u.valToPos(e.at, "x", true);
            if (x < bbox.left || x > bbox.left + bbox.width) continue;
            ctx.strokeStyle = markColour(e.kind);
            ctx.beginPath();
            ctx.moveTo(x, bbox.top);
            ctx.lineTo(x, bbox.top + bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        },
      ],
    },
  };
}

function eventLabel(e) {
  const key = `events.${e.kind}`;
  const text = t(key);
  return text === key ? e.kind : text;
}

// The same events as text, for everyone (and screen readers).
function listEvents(section, events) {
  if (!events.length) return;
  const list = document.createElement("ul");
  list.className = "legend graph-events";
  list.dataset.graphEvents = String(events.length);
  list.setAttribute("aria-label", t("events.title"));
  const when = new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "short" });
  for (const e of events) {
    const item = document.createElement("li");
    item.dataset.kind = e.kind;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    dot.style.background = markColour(e.kind);
    item.append(dot, `${when.format(new Date(e.at * 1000))} ${eventLabel(e)}${e.detail ? ` (${e.detail})` : ""}`);
    list.append(item);
  }
  section.querySelector("[data-graphs]").before(list);
}

async function loadEvents(section) {
  const job = section.dataset.jobGraphs;
  const url = job
    ? `/api/v1/monitoring/jobs/${encodeURIComponent(job)}/events`
    : `/api/v1/monitoring/nodes/${encodeURIComponent(section.dataset.nodeGraphs)}/events?range=3600`;
  try {
    return (await api(url)).items;
  } catch (error) {
    return [];
  }
}

function draw(box, data, events = []) {
  const width = Math.max(260, box.clientWidth - 8);
  const series = [
    { label: t("graphs.time"), value: (u, v) => (v == null ? "" : timeLabel.format(new Date(v * 1000))) },
  ];
  data.series.forEach((s, i) => {
    const colour = css(PALETTE[i % PALETTE.length]);
    series.push({ label: s.name, stroke: colour, width: 2, value: (u, v) => formatValue(v, data.unit) });
  });
  const axes = [
    { stroke: css("--muted"), grid: { stroke: css("--border"), width: 1 },
      values: (u, ticks) => ticks.map((v) => timeLabel.format(new Date(v * 1000))) },
    { stroke: css("--muted"), grid: { stroke: css("--border"), width: 1 }, size: 70,
      values: (u, ticks) => ticks.map((v) => formatValue(v, data.unit)) },
  ];
  const inside = events.filter((e) => e.at >= data.start && e.at <= data.end);
  box.dataset.marks = String(inside.length);
  return new uPlot({ width, height: 180, axes, series, legend: { live: true }, plugins: [marks(inside)] },
    [data.timestamps, ...data.series.map((s) => s.values)], box);
}

function panelUrl(section, panel) {
  const name = encodeURIComponent(panel.name);
  const job = section.dataset.jobGraphs;
  if (job) return `/api/v1/monitoring/jobs/${encodeURIComponent(job)}/panels/${name}`;
  return `/api/v1/monitoring/nodes/${encodeURIComponent(section.dataset.nodeGraphs)}/panels/${name}?range=3600`;
}

async function render(section) {
  const grid = section.querySelector("[data-graphs]");
  const status = section.querySelector("[data-graphs-status]");
  const job = section.dataset.jobGraphs;
  if (!(section.dataset.nodeGraphs || job) || !grid || section.dataset.drawn) return;
  section.dataset.drawn = "1";
  let list;
  try {
    list = await api("/api/v1/monitoring/panels");
  } catch (error) {
    status.textContent = t("graphs.unavailable", { reason: error.message });
    return;
  }
  const events = await loadEvents(section);
  listEvents(section, events);
  for (const panel of list.items) {
    if (job && panel.scope === "gpu" && section.dataset.gpus === "0") continue;
    const figure = document.createElement("figure");
    figure.className = "card chart graph";
    figure.dataset.panel = panel.name;
    const caption = document.createElement("figcaption");
    caption.textContent = title(panel);
    figure.append(caption);
    const box = document.createElement("div");
    box.className = "graph-box";
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", title(panel));
    figure.append(box);
    grid.append(figure);
    if (!panel.available) {
      note(box, t("graphs.no_exporter"));
      continue;
    }
    try {
      const data = await api(panelUrl(section, panel));
      if (!data.available) note(box, t("graphs.no_exporter"));
      else if (!data.series.length) note(box, t("graphs.no_data"));
      else if (uPlot) draw(box, data, events);
    } catch (error) {
      note(box, t("graphs.unavailable", { reason: error.message }));
    }
  }
}

// Cluster history (/cluster/history): the portal's own Slurm gauges from Prometheus,
// one figure per named panel already in the page (cpus, gpus, jobs).
function historyName(data, s) {
  if (data.panel === "jobs") {
    const key = `job_status.${s.labels.state}`;
    const text = t(key);
    return text === key ? s.name : text;
  }
  const kind = t(`history.${s.labels.kind}`);
  return `${s.labels.partition} ${kind.startsWith("history.") ? s.labels.kind : kind}`;
}

async function renderHistory(section) {
  if (section.dataset.drawn) return;
  section.dataset.drawn = "1";
  const range = encodeURIComponent(section.dataset.historyGraphs);
  for (const figure of section.querySelectorAll("[data-history-panel]")) {
    const box = figure.querySelector(".graph-box");
    const name = encodeURIComponent(figure.dataset.historyPanel);
    try {
      const data = await api(`/api/v1/monitoring/history/${name}?range=${range}`);
      figure.dataset.available = data.available ? "1" : "0";
      if (!data.available) note(box, data.reason || t("graphs.no_exporter"));
      else if (!data.series.length) note(box, t("graphs.no_data"));
      else if (uPlot) draw(box, { ...data, unit: "count", series: data.series.map((s) => ({ ...s, name: historyName(data, s) })) });
    } catch (error) {
      note(box, t("graphs.unavailable", { reason: error.message }));
    }
  }
}

function renderAll() {
  document.querySelectorAll("[data-node-graphs], [data-job-graphs]").forEach((section) => render(section));
  document.querySelectorAll("[data-history-graphs]").forEach((section) => renderHistory(section));
}

document.body.addEventListener("htmx:afterSwap", renderAll);
renderAll();
