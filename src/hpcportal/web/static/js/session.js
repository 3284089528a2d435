// One session's page: state, time left and actions (extend, relaunch, delete), the
// waiting panel that turns into the desktop (noVNC, loaded on demand) or the web
// app's link when the session is ready, the view-only share link, and the log.

import { api, showResult, t } from "./core.js";
import { ACTIVE, applyBadge, follow, loadLog, setTimeLeft, tickTimes } from "./sessionkit.js";

const view = document.querySelector('[data-testid="session-view"]');
const dataElement = document.getElementById("session-data");
let session = dataElement ? JSON.parse(dataElement.textContent || "{}") : null;
const result = document.getElementById("session-result");
let viewer = null;
let loading = null;

const $ = (selector) => view.querySelector(selector);
const path = (suffix = "") => `/api/v1/sessions/${encodeURIComponent(session.id)}${suffix}`;

function show(selector, visible) {
  const element = $(selector);
  if (element) element.hidden = !visible;
}

function render(fresh) {
  session = fresh;
  const active = ACTIVE.includes(session.state);
  view.dataset.state = session.state;
  applyBadge($('[data-testid="session-state"]'), session);
  $('[data-field="node"]').textContent = session.node || "—";
  setTimeLeft($('[data-field="time-left"]'), session);
  tickTimes(view);
  // Slurm lets the owner raise a pending job's time limit, a running job's only
  // operators and administrators (data-operator, from the page).
  const extendBox = $('[data-field="extend"]');
  const operator = extendBox && extendBox.dataset.operator === "true";
  const extendable = session.state === "pending" || (session.state === "running" && operator);
  show('[data-field="extend"]', extendable);
  show('[data-action="delete"]', active);
  show('[data-panel="waiting"]', active && !session.ready);
  show('[data-when="queued"]', session.state !== "running");
  show('[data-when="starting"]', session.state === "running");
  show('[data-panel="viewer"]', session.ready);
  show('[data-panel="web"]', session.ready);
  show('[data-panel="share"]', active);
  show('[data-field="share-state"]', session.shared);
  show("#share-revoke", session.shared);
  if (!session.shared) show('[data-field="share-link"]', false);
  show('[data-panel="ended"]', !active);
  const ended = $('[data-panel="ended"]');
  ended.querySelector('[data-field="problem"]').hidden = !session.error;
  ended.querySelector('[data-field="error"]').textContent = session.error || "";
  if (session.state === "failed") {
    const box = ended.querySelector('[data-field="log-box"]');
    box.open = true;
    loadLog(box, session.id);
  }
  if (session.connection === "vnc") {
    if (session.ready) startViewer();
    else stopViewer();
  }
}

async function startViewer() {
  if (viewer || loading) return;
  loading = import("./vnc.js");
  try {
    const { Viewer } = await loading;
    if (!session.ready) return;
    viewer = new Viewer({
      path: path("/vnc"),
      stillWanted: async () => {
        render(await api(path()));
        return session.ready;
      },
    });
  } catch (error) {
    console.error("noVNC failed to load", error);
    const status = document.getElementById("vnc-status");
    if (status) status.textContent = t("vnc.load_failed");
  } finally {
    loading = null;
  }
}

function stopViewer() {
  if (!viewer) return;
  viewer.stop();
  viewer = null;
}

async function act(button, work, done) {
  button.disabled = true;
  try {
    const answer = await work();
    if (done) done(answer);
  } catch (error) {
    showResult(result, t("sessions.action_failed", { message: error.message }), true);
  } finally {
    button.disabled = false;
  }
}

function wireActions() {
  $('[data-action="delete"]').addEventListener("click", (event) => {
    if (!window.confirm(t("sessions.confirm_delete", { name: session.app_label }))) return;
    act(event.currentTarget, () => api(path(), { method: "DELETE" }), (fresh) => {
      render(fresh);
      showResult(result, t("sessions.deleted"));
    });
  });
  $('[data-action="relaunch"]').addEventListener("click", (event) => {
    act(event.currentTarget, () => api(path("/relaunch"), { method: "POST" }), (fresh) => {
      location.assign(fresh.view_url);
    });
  });
  const extend = $('[data-action="extend"]');
  extend.addEventListener("click", async () => {
    extend.disabled = true;
    try {
      const hours = Number(document.getElementById("extend-hours").value);
      render(await api(path("/extend"), { method: "POST", json: { hours } }));
      showResult(result, t("sessions.extended"));
    } catch (error) {
      // One sentence, no prefix of the page's own: Slurm's rule (403: a running job's
      // limit is raised only by operators) in the page's language, or the portal's
      // answer (the partition's MaxTime) as it is.
      const running = error.status === 403;
      showResult(result, running ? t("sessions.extend_running_refused") : error.message, true);
    } finally {
      extend.disabled = false;
    }
  });
}

function wireShare() {
  const create = document.getElementById("share-create");
  if (!create) return;
  const shareResult = document.getElementById("share-result");
  const link = document.getElementById("share-link");
  const fail = (error) => showResult(shareResult, t("sessions.action_failed", { message: error.message }), true);
  create.addEventListener("click", async () => {
    create.disabled = true;
    try {
      const share = await api(path("/share"), { method: "POST" });
      link.value = new URL(share.url, location.origin).href;
      render({ ...session, shared: true });
      show('[data-field="share-link"]', true);
      link.select();
      showResult(shareResult, t("share.created"));
    } catch (error) {
      fail(error);
    } finally {
      create.disabled = false;
    }
  });
  document.getElementById("share-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(link.value);
      showResult(shareResult, t("share.copied"));
    } catch {
      link.select();
      showResult(shareResult, t("share.copy_failed"));
    }
  });
  document.getElementById("share-revoke").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      render(await api(path("/share"), { method: "DELETE" }));
      link.value = "";
      showResult(shareResult, t("share.revoked"));
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  });
}

if (view && session) {
  wireActions();
  wireShare();
  follow(
    (fresh) => {
      if (fresh.id === session.id) render({ ...fresh, app_label: session.app_label });
    },
    async () => render({ ...(await api(path())), app_label: session.app_label }),
  );
  render(session);
}
