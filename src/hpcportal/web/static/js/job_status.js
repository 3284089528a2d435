// A job's page, apart from its actions and output (job.js): keeps what depends on the
// job's state right as it changes (live.js sends "hpcportal:job" events), ticks the
// elapsed-versus-limit bar of a running job, and shows a job's efficiency (running: the
// GPUs' from Prometheus; finished: all of it)
// (GET /api/v1/jobs/{id}/efficiency). Every translated label comes from the page's
// data-label-* attributes; data from the server is only ever set as text.

import { api, formatDate, formatNumber, formatPercent } from "./core.js";

const FINISHED = ["completed", "failed", "cancelled", "timeout"];
const WAITING = ["queued", "queued_held"];

const detail = document.querySelector('[data-testid="job-detail"]');
const timeline = document.querySelector('[data-testid="timeline"]');
const progress = document.querySelector('[data-testid="job-progress"]');
const efficiency = document.querySelector('[data-testid="job-efficiency"]');

/** "%(name)s" placeholders of a label filled with text. */
function fill(label, values) {
  return (label || "").replace(/%\((\w+)\)s/g, (match, name) =>
    Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : match,
  );
}

/** Seconds as Slurm prints a duration: 1:05:09, 2-03:00:00 (as the page renders it). */
export function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = String(Math.floor((total % 3600) / 60)).padStart(2, "0");
  const secs = String(total % 60).padStart(2, "0");
  return days ? `${days}-${String(hours).padStart(2, "0")}:${minutes}:${secs}` : `${hours}:${minutes}:${secs}`;
}

// --- progress of a running job -----------------------------------------------------------

function tick() {
  if (!progress || progress.hidden) return;
  const start = Date.parse(progress.dataset.start || "");
  if (Number.isNaN(start)) return;
  const elapsed = (Date.now() - start) / 1000;
  const limit = Number(progress.dataset.limitSeconds || 0);
  const bar = progress.querySelector("progress");
  const text = progress.querySelector("[data-progress-text]");
  if (limit > 0) {
    bar.value = Math.min(100, Math.round((100 * elapsed) / limit));
    text.textContent = fill(progress.dataset.label, { elapsed: clock(elapsed), limit: clock(limit) });
  } else {
    bar.removeAttribute("value");
    text.textContent = fill(progress.dataset.labelUnlimited, { elapsed: clock(elapsed) });
  }
}

// --- the state-dependent parts ------------------------------------------------------------

function setStep(name, { done, iso, note }) {
  const step = timeline && timeline.querySelector(`[data-step="${name}"]`);
  if (!step) return;
  step.classList.toggle("done", done);
  const time = step.querySelector("[data-step-time]");
  time.hidden = !done;
  time.dateTime = done ? iso || "" : "";
  time.textContent = done ? formatDate(iso, true) : "—";
  step.querySelector("[data-step-note]").textContent = note || "";
  const extra = step.querySelector("[data-step-extra]");
  if (extra && !done) extra.remove();
}

function applyStatus(job) {
  const status = job.status;
  const waiting = WAITING.includes(status);
  const finished = FINISHED.includes(status);
  detail.dataset.status = status;
  for (const row of detail.querySelectorAll("[data-waiting-only]")) {
    const value = row.querySelector("dd");
    const field = value ? value.dataset.testid : "";
    if (!waiting) row.hidden = true;
    else if (field === "job-reason" && job.reason && job.reason !== "None") {
      value.textContent = job.reason;
      row.hidden = false;
    } else if (field === "job-dependency") {
      value.textContent = job.dependency || "—";
      row.hidden = !job.dependency;
    }
  }
  if (timeline) {
    const started = !waiting && Boolean(job.start_time);
    const expected = job.start_time
      ? fill(timeline.dataset.labelExpectedStart, { time: formatDate(job.start_time, true) })
      : timeline.dataset.labelNotEstimated;
    setStep("start", { done: started, iso: job.start_time, note: waiting ? expected : "" });
    const expectedEnd =
      !finished && !waiting && job.end_time
        ? fill(timeline.dataset.labelExpectedEnd, { time: formatDate(job.end_time, true) })
        : "";
    setStep("end", { done: finished, iso: job.end_time, note: expectedEnd });
  }
  if (progress) {
    progress.hidden = status !== "running" || !job.start_time;
    if (job.start_time) progress.dataset.start = job.start_time;
    if (job.time_limit_minutes !== undefined) {
      progress.dataset.limitSeconds = String((job.time_limit_minutes || 0) * 60);
    }
    tick();
  }
  if (finished) showEfficiency("finished");
  else if (status === "running" && job.start_time) showEfficiency("running");
}

// --- efficiency: a running job's (GPUs from Prometheus), a finished job's ---------------------

// "running" once a running job's figures were fetched, "finished" once a finished job's.
let efficiencyShown = null;

function fact(label, value, note) {
  const row = document.createElement("div");
  const term = document.createElement("dt");
  term.textContent = label;
  const data = document.createElement("dd");
  data.textContent = value;
  if (note) {
    const small = document.createElement("small");
    small.textContent = ` (${note})`;
    data.append(small);
  }
  row.append(term, data);
  return row;
}

/** The translated label of a figure's "why" code (job_running -> data-label-why-job-running). */
function whyLabel(why) {
  const key = why.replace(/(^|_)(\w)/g, (match, sep, letter) => letter.toUpperCase());
  return efficiency.dataset[`labelWhy${key}`];
}

/** One figure: its percentage and where it came from, or why there is none. */
function figureFact(name, label, figure, detail) {
  let row;
  if (!figure || figure.value === null || figure.value === undefined) {
    row = fact(label, (figure && figure.why && whyLabel(figure.why)) || efficiency.dataset.labelNone);
  } else {
    const source =
      figure.source === "prometheus"
        ? fill(efficiency.dataset.labelSourcePrometheus, { exporter: figure.exporter || "" })
        : figure.source === "sstat"
          ? efficiency.dataset.labelSourceSstat
          : efficiency.dataset.labelSourceSacct;
    // The API gives ratios (0.5 is half); formatPercent takes percentages.
    row = fact(label, formatPercent(100 * figure.value), [detail, source].filter(Boolean).join("; "));
  }
  row.dataset.figure = name;
  row.dataset.source = (figure && figure.source) || "";
  return row;
}

function renderEfficiency(e) {
  const facts = efficiency.querySelector("[data-efficiency-facts]");
  const figures = e.figures || {};
  const available = e.cpus * e.elapsed_seconds;
  const cpuNote =
    figures.cpu && figures.cpu.source === "sacct" && available > 0
      ? fill(efficiency.dataset.labelCpuDetail, { used: clock(e.cpu_time_seconds), available: clock(available) })
      : "";
  const memoryNote =
    figures.memory && figures.memory.source === "sacct" && e.memory_max_used_mb != null && e.memory_requested_mb != null
      ? fill(efficiency.dataset.labelMemoryDetail, {
          used: formatNumber(e.memory_max_used_mb),
          requested: formatNumber(e.memory_requested_mb),
        })
      : "";
  const rows = [
    figureFact("cpu", efficiency.dataset.labelCpu, figures.cpu, cpuNote),
    figureFact("memory", efficiency.dataset.labelMemory, figures.memory, memoryNote),
  ];
  if (e.gpus > 0) {
    rows.push(figureFact("gpu_utilisation", efficiency.dataset.labelGpu, figures.gpu_utilisation, ""));
    rows.push(figureFact("gpu_memory", efficiency.dataset.labelGpuMemory, figures.gpu_memory, ""));
  }
  facts.replaceChildren(...rows);
  efficiency.dataset.loaded = "true";
}

async function showEfficiency(stage) {
  if (!efficiency || efficiencyShown === stage || efficiencyShown === "finished") return;
  efficiencyShown = stage;
  efficiency.hidden = false;
  const id = efficiency.dataset.jobIdEfficiency;
  // Accounting records a job's end a moment after slurmctld: try a few times.
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try {
      renderEfficiency(await api(`/api/v1/jobs/${encodeURIComponent(id)}/efficiency`, { quiet401: true }));
      return;
    } catch (error) {
      if (attempt === 4 || (error.status && error.status !== 404 && error.status < 500)) {
        const facts = efficiency.querySelector("[data-efficiency-facts]");
        const message = fill(efficiency.dataset.labelError, { message: error.message });
        facts.replaceChildren(fact(efficiency.dataset.labelCpu, message));
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000 * (attempt + 1)));
    }
  }
}

if (detail) {
  document.addEventListener("hpcportal:job", (event) => {
    if (event.detail && event.detail.id === detail.dataset.jobId) applyStatus(event.detail);
  });
  if (FINISHED.includes(detail.dataset.status)) showEfficiency("finished");
  else if (detail.dataset.status === "running" && efficiency && !efficiency.hidden) showEfficiency("running");
  if (progress) setInterval(tick, 1000);
}
