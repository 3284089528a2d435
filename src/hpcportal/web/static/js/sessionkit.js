// Interactive sessions, shared by the sessions list and the session page: state badges,
// time left, the log, and following changes (WebSocket channel "sessions"; polling
// while the socket is down, and once after each reconnect).

import { lang, t } from "./core.js";
import * as live from "./live.js";

export const ACTIVE = ["creating", "pending", "running"];
const TICK_MS = 15_000;

const hours = new Intl.NumberFormat(lang, { style: "unit", unit: "hour", unitDisplay: "short" });
const minutes = new Intl.NumberFormat(lang, { style: "unit", unit: "minute", unitDisplay: "short" });

/** The badge's state: a running job whose app does not answer yet is "starting". */
export function stateKey(session) {
  return session.state === "running" && !session.ready ? "starting" : session.state;
}

export function applyBadge(badge, session) {
  if (!badge) return;
  const key = stateKey(session);
  badge.className = `state state-${key}`;
  badge.dataset.state = session.state;
  badge.dataset.ready = String(Boolean(session.ready));
  badge.textContent = t(`session_state.${key}`);
}

/** "1 hr 5 min left" in the page's language. */
export function formatLeft(seconds) {
  const total = Math.max(0, Math.round(seconds / 60));
  const h = Math.floor(total / 60);
  const m = total % 60;
  let text = minutes.format(m);
  if (h) text = m ? `${hours.format(h)} ${minutes.format(m)}` : hours.format(h);
  return t("sessions.left", { time: text });
}

/** Point a time-left element at the session's end (nothing unless it runs). */
export function setTimeLeft(element, session) {
  if (!element) return;
  element.dataset.endsAt = session.state === "running" && session.ends_at ? session.ends_at : "";
}

/** Rewrite every [data-field=time-left] below root from its data-ends-at. */
export function tickTimes(root = document) {
  for (const element of root.querySelectorAll('[data-field="time-left"]')) {
    const ends = element.dataset.endsAt;
    const when = ends ? new Date(ends).getTime() : NaN;
    element.textContent = Number.isNaN(when) ? "—" : formatLeft((when - Date.now()) / 1000);
  }
}

/** Fill a log box (<details data-field=log-box>) with the end of the session's log, once. */
export async function loadLog(box, sessionId) {
  if (!box || box.dataset.loaded === "true") return;
  box.dataset.loaded = "true";
  const pre = box.querySelector('[data-field="log"]');
  try {
    const response = await fetch(`/api/v1/sessions/${encodeURIComponent(sessionId)}/log`, {
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(String(response.status));
    const text = await response.text();
    pre.textContent = text.trim() ? text : t("sessions.log_empty");
  } catch {
    box.dataset.loaded = "false";
  }
}

/**
 * Call onSession(view) whenever one of your sessions changes; poll() while the
 * socket is down and after each reconnect, and refresh the times left meanwhile.
 */
export function follow(onSession, poll) {
  live.on("session", (message) => {
    if (message.session) onSession(message.session);
  });
  let connectedOnce = false;
  live.on("hello", () => {
    if (connectedOnce) poll().catch(() => {});
    connectedOnce = true;
  });
  live.subscribe("sessions");
  live.addPoller(poll);
  tickTimes();
  setInterval(() => tickTimes(), TICK_MS);
}
