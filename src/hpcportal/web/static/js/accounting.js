// Accounting charts (uPlot): jobs per day stacked by state, and CPU-hours per day.
// The numbers come from the page (computed on the server from sacct); a table with
// the same numbers is on the page for screen readers and for printing.

import { formatNumber, lang, t } from "./core.js";

const uPlot = window.uPlot;
const data = JSON.parse(document.getElementById("chart-data").textContent);
const COLOURS = {
  completed: "--s-completed",
  failed: "--s-failed",
  cancelled: "--s-cancelled",
  timeout: "--s-timeout",
  running: "--s-running",
  other: "--s-queued",
};
const charts = [];

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

const DAY = 86400;
const xScale = { time: false, range: (u, min, max) => [min - DAY / 2, max + DAY / 2] };
const dayLabel = new Intl.DateTimeFormat(lang, { month: "short", day: "numeric", timeZone: "UTC" });

function axes() {
  const stroke = css("--muted");
  const grid = { stroke: css("--border"), width: 1 };
  return [
    {
      stroke,
      grid,
      incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY],
      values: (u, ticks) => ticks.map((v) => dayLabel.format(new Date(v * 1000))),
    },
    { stroke, grid, values: (u, ticks) => ticks.map((v) => formatNumber(v)) },
  ];
}

function size(box) {
  return { width: Math.max(280, box.clientWidth - 8), height: 240 };
}

function draw() {
  while (charts.length) charts.pop().destroy();
  const days = data.series.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  if (!days.length || !uPlot) return;
  const bars = uPlot.paths.bars({ size: [0.7, 40], align: 0 });

  // Stacked: each series is drawn as the running total, the last state first.
  const statuses = data.statuses;
  const stacked = [];
  let running = days.map(() => 0);
  for (const status of statuses) {
    running = running.map((sum, i) => sum + data.series.jobs[status][i]);
    stacked.push(running);
  }
  const jobsBox = document.getElementById("chart-jobs");
  const order = statuses.map((s, i) => i).reverse();
  charts.push(
    new uPlot(
      {
        ...size(jobsBox),
        axes: axes(),
        scales: { x: xScale },
        legend: { live: false },
        series: [
          { value: (u, v) => (v == null ? "" : dayLabel.format(new Date(v * 1000))) },
          ...order.map((i) => ({
            label: data.labels[statuses[i]],
            fill: css(COLOURS[statuses[i]]),
            stroke: css(COLOURS[statuses[i]]),
            paths: bars,
            points: { show: false },
            value: (u, v, si, di) => formatNumber(di == null ? 0 : data.series.jobs[statuses[i]][di]),
          })),
        ],
      },
      [days, ...order.map((i) => stacked[i])],
      jobsBox,
    ),
  );

  const cpuBox = document.getElementById("chart-cpu");
  charts.push(
    new uPlot(
      {
        ...size(cpuBox),
        axes: axes(),
        scales: { x: xScale },
        legend: { live: false },
        series: [
          { value: (u, v) => (v == null ? "" : dayLabel.format(new Date(v * 1000))) },
          {
            label: data.cpu_label,
            fill: css("--accent"),
            stroke: css("--accent"),
            paths: bars,
            points: { show: false },
            value: (u, v) => formatNumber(v, 1),
          },
        ],
      },
      [days, data.series.cpu_hours],
      cpuBox,
    ),
  );
  const total = data.series.cpu_hours.reduce((a, b) => a + b, 0);
  if (!total && !stacked[stacked.length - 1].some(Boolean)) {
    for (const box of [jobsBox, cpuBox]) box.setAttribute("aria-label", t("accounting.no_data"));
  }
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(draw, 200);
});
document.addEventListener("hpcportal:theme", draw);
draw();
