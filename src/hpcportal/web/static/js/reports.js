// Report pages: the report form (with its preview chart), the schedule form, and the
// delete buttons of both lists. Everything goes through /api/v1/reports; the page's
// translated texts come in the #reports-text JSON block.

import { api, formatNumber, showResult } from "./core.js";

const textBlock = document.getElementById("reports-text");
const text = textBlock ? JSON.parse(textBlock.textContent) : {};

function split(value) {
  return value.split(",").map((v) => v.trim()).filter(Boolean);
}

function checked(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
}

function dayStart(value, zone) {
  // A date from <input type=date> at local midnight of the form's zone, sent as UTC by the
  // server's own preset when the zone is UTC; otherwise the browser's offset for that date.
  if (zone === "UTC") return `${value}T00:00:00+00:00`;
  return new Date(`${value}T00:00:00`).toISOString();
}

/** The ReportSpec the form describes. */
function specOf(form) {
  const zone = form.dataset.timeZone || "UTC";
  const kind = form.elements.kind.value;
  const periodSelect = form.elements.period;
  let period = (text.presets || {}).last_month;
  if (periodSelect) {
    if (periodSelect.value === "custom") {
      const start = form.elements.start.value;
      const end = form.elements.end.value;
      period = start && end ? { start: dayStart(start, zone), end: dayStart(end, zone) } : period;
    } else {
      period = text.presets[periodSelect.value];
    }
  }
  const spec = {
    kind,
    period,
    language: form.elements.language.value,
    time_zone: zone,
    scope: { users: split(form.elements.users.value), accounts: split(form.elements.accounts.value) },
  };
  if (kind === "custom") {
    spec.dimensions = checked(form, "dimension");
    spec.measures = checked(form, "measure");
  }
  return spec;
}

function showKindFields(form) {
  const custom = form.elements.kind.value === "custom";
  for (const node of form.querySelectorAll("[data-custom-only]")) node.hidden = !custom;
  const period = form.elements.period;
  const dates = period && period.value === "custom";
  for (const node of form.querySelectorAll("[data-custom-dates]")) node.hidden = !dates;
}

// --- preview chart -------------------------------------------------------------------

let chart = null;
let previewTimer = 0;
let previewSeq = 0;

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function drawPreview(document_) {
  const box = document.getElementById("preview-chart");
  const caption = document.getElementById("preview-sections");
  if (chart) {
    chart.destroy();
    chart = null;
  }
  const sections = document_.sections || [];
  caption.textContent = sections.length ? `${text.sections} ${sections.map((s) => s.title).join(" · ")}` : "";
  const found = sections.flatMap((s) => s.charts || [])[0];
  if (!found || !window.uPlot || !found.labels.length) {
    box.textContent = text.no_chart;
    box.setAttribute("aria-label", text.no_chart);
    return;
  }
  box.textContent = "";
  box.setAttribute("aria-label", found.title);
  const xs = found.labels.map((_, i) => i);
  const palette = ["--accent", "--s-running", "--s-completed", "--s-failed", "--s-timeout"];
  const bars = window.uPlot.paths.bars({ size: [0.7, 40], align: 0 });
  chart = new window.uPlot(
    {
      width: Math.max(280, box.clientWidth - 8),
      height: 260,
      title: found.title,
      scales: { x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] } },
      axes: [
        { stroke: css("--muted"), values: (u, ticks) => ticks.map((v) => found.labels[v] ?? "") },
        { stroke: css("--muted"), values: (u, ticks) => ticks.map((v) => formatNumber(v)) },
      ],
      series: [
        { value: (u, v) => (v == null ? "" : found.labels[v] ?? "") },
        ...found.series.map((s, i) => ({
          label: s.name,
          stroke: css(palette[i % palette.length]),
          fill: found.kind === "bar" ? css(palette[i % palette.length]) : undefined,
          paths: found.kind === "bar" ? bars : undefined,
          value: (u, v) => (v == null ? "" : formatNumber(v, 1)),
        })),
      ],
    },
    [xs, ...found.series.map((s) => s.values)],
    box,
  );
}

function schedulePreview(form) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(async () => {
    const seq = ++previewSeq;
    const caption = document.getElementById("preview-sections");
    caption.textContent = text.loading;
    try {
      const document_ = await api("/api/v1/reports/preview", { method: "POST", json: specOf(form) });
      if (seq === previewSeq) drawPreview(document_);
    } catch (error) {
      if (seq === previewSeq) caption.textContent = error.message;
    }
  }, 400);
}

// --- the forms -------------------------------------------------------------------------

const reportForm = document.getElementById("report-form");
if (reportForm) {
  showKindFields(reportForm);
  reportForm.addEventListener("change", () => {
    showKindFields(reportForm);
    schedulePreview(reportForm);
  });
  reportForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = document.getElementById("report-result");
    const formats = checked(reportForm, "format");
    if (!formats.length) return showResult(result, text.pick_format, true);
    const button = reportForm.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const created = await api("/api/v1/reports", {
        method: "POST",
        json: { spec: specOf(reportForm), formats },
      });
      showResult(result, text.queued);
      window.location.assign(`/reports#report-${created.id}`);
    } catch (error) {
      showResult(result, error.message, true);
    } finally {
      button.disabled = false;
    }
  });
  schedulePreview(reportForm);
}

const scheduleForm = document.getElementById("schedule-form");
if (scheduleForm) {
  showKindFields(scheduleForm);
  scheduleForm.addEventListener("change", () => showKindFields(scheduleForm));
  scheduleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = document.getElementById("schedule-result");
    const formats = checked(scheduleForm, "format");
    if (!formats.length) return showResult(result, text.pick_format, true);
    const f = scheduleForm.elements;
    try {
      await api("/api/v1/reports/schedules", {
        method: "POST",
        json: {
          name: f.name.value,
          spec: specOf(scheduleForm),
          formats,
          language: f.language.value,
          frequency: f.frequency.value,
          time_of_day: f.time_of_day.value.slice(0, 5),
          time_zone: f.time_zone.value,
        },
      });
      window.location.reload();
    } catch (error) {
      showResult(result, error.message, true);
    }
  });
}

// --- delete buttons (the list may be redrawn by htmx: delegate) ---------------------------

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-delete-report], [data-delete-schedule]");
  if (!button) return;
  const report = button.dataset.deleteReport;
  if (!window.confirm(text.confirm_delete)) return;
  const path = report ? `/api/v1/reports/${report}` : `/api/v1/reports/schedules/${button.dataset.deleteSchedule}`;
  try {
    await api(path, { method: "DELETE" });
    button.closest("tr").remove();
    const result = document.getElementById("reports-result");
    if (result && text.deleted) showResult(result, text.deleted);
  } catch (error) {
    const result = document.getElementById("reports-result") || document.getElementById("schedule-result");
    if (result) showResult(result, error.message, true);
  }
});
