// A job's page: cancel/hold/release/requeue through the API, and the live output tail
// (WebSocket channel job_output:<id>, or polling GET /output while the socket is down).

import { api, showResult, t } from "./core.js";
import * as live from "./live.js";

const MAX_SHOWN_BYTES = 256 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const actions = document.querySelector('[data-testid="job-actions"]');
const result = document.getElementById("action-result");
const output = document.querySelector('[data-testid="output"]');

if (actions) {
  actions.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const id = actions.dataset.job;
    const question = { cancel: "action.confirm.cancel", requeue: "action.confirm.requeue" }[action];
    if (question && !window.confirm(t(question, { id }))) return;
    button.disabled = true;
    try {
      const answer = await api(`/api/v1/jobs/${encodeURIComponent(id)}/${action}`, { method: "POST" });
      showResult(result, t("action.done", { message: answer.message || action }));
      // The portal reads the job again and pushes its new state over the socket within
      // a second; a GET now could answer the state from before and land after the push.
      // Without the socket, ask once that read has had time to finish.
      if (!live.isConnected()) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const fresh = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
        if (fresh && fresh.job) live.applyJob(fresh.job);
      }
    } catch (error) {
      showResult(result, error.message, true);
    } finally {
      button.disabled = false;
    }
  });
}

const FINISHED = ["completed", "failed", "cancelled", "timeout"];

/** The actions that make sense in a state (as the server decides when rendering). */
function allowed(status) {
  const result = new Set();
  if (!FINISHED.includes(status)) result.add("cancel");
  if (status === "queued") result.add("hold");
  if (status === "queued_held") result.add("release");
  if (status === "running" || FINISHED.includes(status)) result.add("requeue");
  return result;
}

if (actions) {
  document.addEventListener("hpcportal:job", (event) => {
    const job = event.detail;
    if (job.id !== actions.dataset.job) return;
    const ok = allowed(job.status);
    for (const button of actions.querySelectorAll("button[data-action]")) {
      button.hidden = !ok.has(button.dataset.action);
    }
  });
}

if (output) {
  const id = output.dataset.jobId;
  let end = Number(output.dataset.offset || 0);
  let finished = output.dataset.finished === "true";
  let fetching = false;
  output.dataset.waiting = t("output.waiting");

  const atBottom = () => output.scrollHeight - output.scrollTop - output.clientHeight < 40;

  function append(text) {
    if (!text) return;
    const follow = atBottom();
    output.append(document.createTextNode(text));
    const shown = output.textContent;
    if (shown.length > MAX_SHOWN_BYTES) output.textContent = shown.slice(-MAX_SHOWN_BYTES);
    if (follow) output.scrollTop = output.scrollHeight;
  }

  /** Add data that starts at byte ``offset``, skipping what is already shown. */
  async function receive(offset, data) {
    const bytes = encoder.encode(data);
    if (offset > end) {
      await fetchMore(); // a gap: read it from the API first
      if (offset > end) return;
    }
    if (offset + bytes.length <= end) return;
    append(decoder.decode(bytes.slice(end - offset)));
    end = offset + bytes.length;
    output.dataset.offset = String(end);
  }

  async function fetchMore() {
    if (fetching) return;
    fetching = true;
    try {
      for (let round = 0; round < 20; round += 1) {
        const chunk = await api(`/api/v1/jobs/${encodeURIComponent(id)}/output?stream=stdout&offset=${end}`);
        if (chunk.data) {
          append(chunk.data);
          end = chunk.next_offset;
          output.dataset.offset = String(end);
        }
        finished = chunk.finished && chunk.eof;
        output.dataset.finished = String(finished);
        if (chunk.eof) break;
      }
    } catch {
      // Shown again on the next message or poll.
    } finally {
      fetching = false;
    }
  }

  live.on("job_output", (message) => {
    if (message.job_id !== id || message.stream !== "stdout") return;
    receive(Number(message.offset) || 0, message.data || "");
  });
  // A finished job's output is all on the page (or a fetch away): nothing to follow.
  if (!finished) live.subscribe(`job_output:${id}`);
  live.addPoller(async () => {
    if (!finished) await fetchMore();
  });
}
