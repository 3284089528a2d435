// "My sessions": a card per session, updated in place as sessions change (live, or
// polled); a session that is not on the page yet re-renders the list through htmx.
// Delete (after a confirmation) and Relaunch act through the sessions API.

import { api, showResult, t, toast } from "./core.js";
import { ACTIVE, applyBadge, follow, loadLog, setTimeLeft, tickTimes } from "./sessionkit.js";

function cardOf(id) {
  return document.querySelector(`.session-card[data-session-id="${CSS.escape(id)}"]`);
}

function applyCard(card, session) {
  card.dataset.state = session.state;
  applyBadge(card.querySelector('[data-testid="session-state"]'), session);
  const node = card.querySelector('[data-field="node"]');
  if (node) node.textContent = session.node || "—";
  setTimeLeft(card.querySelector('[data-field="time-left"]'), session);
  tickTimes(card);
  card.querySelector('[data-action="open"]').hidden = !session.ready;
  card.querySelector('[data-action="delete"]').hidden = !ACTIVE.includes(session.state);
  const problem = card.querySelector('[data-field="problem"]');
  problem.hidden = !(session.state === "failed" || session.error);
  card.querySelector('[data-field="error"]').textContent = session.error || "";
}

let refreshTimer = 0;

/** Re-read the whole list (a session this page has not shown yet). */
function refreshList() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (!window.htmx || !document.getElementById("sessions-list")) return;
    toast(t("sessions.new_list"), 2000);
    window.htmx.ajax("GET", "/sessions", { target: "#sessions-list", swap: "outerHTML" });
  }, 300);
}

function onSession(session) {
  const card = cardOf(session.id);
  if (card) applyCard(card, session);
  else refreshList();
}

async function poll() {
  const sessions = await api("/api/v1/sessions");
  for (const session of sessions || []) onSession(session);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest(".session-card button[data-action]");
  if (!button) return;
  const card = button.closest(".session-card");
  const id = card.dataset.sessionId;
  const result = card.querySelector('[data-field="result"]');
  const action = button.dataset.action;
  if (action === "delete" && !window.confirm(t("sessions.confirm_delete", { name: card.dataset.appName }))) {
    return;
  }
  button.disabled = true;
  try {
    if (action === "delete") {
      applyCard(card, await api(`/api/v1/sessions/${encodeURIComponent(id)}`, { method: "DELETE" }));
      showResult(result, t("sessions.deleted"));
    } else if (action === "relaunch") {
      const fresh = await api(`/api/v1/sessions/${encodeURIComponent(id)}/relaunch`, { method: "POST" });
      location.assign(fresh.view_url);
    }
  } catch (error) {
    showResult(result, t("sessions.action_failed", { message: error.message }), true);
  } finally {
    button.disabled = false;
  }
});

// A failed session's log is read when its box is opened.
document.addEventListener(
  "toggle",
  (event) => {
    const box = event.target;
    if (box.matches && box.matches('details[data-field="log-box"]') && box.open) {
      loadLog(box, box.closest(".session-card").dataset.sessionId);
    }
  },
  true,
);

follow(onSession, poll);
