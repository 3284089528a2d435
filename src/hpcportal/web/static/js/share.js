// A view-only desktop through a share link: noVNC (loaded on demand) on the share's
// WebSocket. The page asks /shares/<share id>/status whether the link still opens:
// while the session is starting (every 10 s), and when the connection drops. Both
// are authenticated by the share's cookie (set when the link was opened), so no
// token is in any URL here.

import { t } from "./core.js";

const view = document.querySelector('[data-testid="share-view"]');
const POLL_MS = 10_000;
let viewer = null;
let timer = 0;

function show(status) {
  view.dataset.status = status;
  view.querySelector('[data-field="waiting"]').hidden = status !== "waiting";
  view.querySelector('[data-field="gone"]').hidden = status !== "gone";
  view.querySelector('[data-panel="viewer"]').hidden = status !== "ready";
}

async function check() {
  const response = await fetch(`/shares/${encodeURIComponent(view.dataset.share)}/status`, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw new Error(String(response.status));
  const data = await response.json();
  return data.status;
}

async function update(status) {
  show(status);
  clearTimeout(timer);
  if (status === "ready") {
    await start();
  } else {
    if (viewer) viewer.stop();
    viewer = null;
    if (status === "waiting") timer = setTimeout(poll, POLL_MS);
  }
}

async function poll() {
  try {
    await update(await check());
  } catch {
    timer = setTimeout(poll, POLL_MS);
  }
}

async function start() {
  if (viewer) return;
  try {
    const { Viewer } = await import("./vnc.js");
    viewer = new Viewer({
      path: `/api/v1/shares/${encodeURIComponent(view.dataset.share)}/vnc`,
      viewOnly: true,
      stillWanted: async () => {
        const status = await check();
        if (status !== "ready") await update(status);
        return status === "ready";
      },
    });
  } catch (error) {
    console.error("noVNC failed to load", error);
    const status = document.getElementById("vnc-status");
    if (status) status.textContent = t("vnc.load_failed");
  }
}

if (view) update(view.dataset.status);
