// Every page: the header (menu, language, theme, bell), htmx settings, live updates.

import {
  api,
  csrfToken,
  describeNotification,
  el,
  formatAgo,
  formatNumber,
  loginRedirect,
  notificationLink,
  setCookie,
  t,
  username,
} from "./core.js";
import * as live from "./live.js";

document.documentElement.classList.add("js");

// --- Time zone: the server formats dates in the browser's zone --------------------------
try {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && !document.cookie.includes(`hpcportal_tz=${encodeURIComponent(zone)}`)) {
    setCookie("hpcportal_tz", zone);
  }
} catch {
  // Without a zone the server uses UTC.
}

// --- Navigation on narrow screens ----------------------------------------------------------
const navToggle = document.getElementById("nav-toggle");
const nav = document.getElementById("site-nav");
if (navToggle && nav) {
  navToggle.addEventListener("click", () => {
    const open = nav.classList.toggle("open");
    navToggle.setAttribute("aria-expanded", String(open));
  });
}

// --- Navigation on wide screens: entries that do not fit go under "More" ----------------
// The header is one row from 801 px up, however many entries, tools or unread
// notifications: when the entries overflow their row, the last ones move into a "More"
// menu (and back when there is room). Without JavaScript the row scrolls instead.
const navList = nav?.querySelector(":scope > ul");
if (nav && navList && navToggle) {
  const entries = [...navList.children];
  const more = el("details", "menu nav-more");
  const moreSummary = el("summary", "", t("nav.more"));
  moreSummary.dataset.testid = "nav-more";
  const moreList = el("ul", "menu-panel nav-more-list");
  more.append(moreSummary, moreList);
  more.hidden = true;
  nav.append(more);
  let fitting = false;
  const fitNav = () => {
    if (fitting) return;
    fitting = true;
    more.open = false;
    navList.append(...entries);
    more.hidden = true;
    const narrow = getComputedStyle(navToggle).display !== "none"; // the ☰ layout
    for (let last = entries.length - 1; !narrow && last > 0; last -= 1) {
      if (navList.scrollWidth <= navList.clientWidth + 1) break;
      more.hidden = false;
      moreList.prepend(entries[last]);
    }
    moreSummary.toggleAttribute("data-current", !!moreList.querySelector("[aria-current]"));
    fitting = false;
  };
  new ResizeObserver(fitNav).observe(nav.parentElement);
  document.fonts?.ready.then(fitNav);
  fitNav();
}

// --- Language: switching submits the form (the server sets the cookie) ---------------------
const langSwitch = document.getElementById("lang-switch");
if (langSwitch) langSwitch.addEventListener("change", () => langSwitch.form.submit());

// Forms that apply as soon as a choice changes.
for (const form of document.querySelectorAll("form[data-autosubmit]")) {
  form.addEventListener("change", () => form.submit());
}

// --- Dark mode -------------------------------------------------------------------------------
const themeButton = document.getElementById("theme-toggle");
function effectiveTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen === "dark" || chosen === "light") return chosen;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function showTheme() {
  if (!themeButton) return;
  const dark = effectiveTheme() === "dark";
  themeButton.setAttribute("aria-pressed", String(dark));
  themeButton.title = dark ? t("theme.light") : t("theme.dark");
}
if (themeButton) {
  themeButton.addEventListener("click", () => {
    const next = effectiveTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    setCookie("hpcportal_theme", next);
    showTheme();
    document.dispatchEvent(new CustomEvent("hpcportal:theme", { detail: next }));
  });
  showTheme();
}

// Close open menus with Escape or a click elsewhere.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  for (const menu of document.querySelectorAll("details.menu[open]")) {
    menu.open = false;
    menu.querySelector("summary")?.focus();
  }
});
document.addEventListener("click", (event) => {
  for (const menu of document.querySelectorAll("details.menu[open]")) {
    if (!menu.contains(event.target)) menu.open = false;
  }
});

// --- htmx: the CSRF header on unsafe requests, and a login redirect on 401 ------------------
document.addEventListener("htmx:configRequest", (event) => {
  event.detail.headers["X-CSRF-Token"] = csrfToken();
});
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  if (xhr && xhr.status === 401) loginRedirect("expired");
});

// --- The bell ----------------------------------------------------------------------------------
const badge = document.querySelector('[data-testid="unread-count"]');
const bell = document.getElementById("bell");
const bellList = document.getElementById("bell-list");
const bellEmpty = document.getElementById("bell-empty");
const browserButton = document.getElementById("bell-browser");
const NOTIFY_KEY = "hpcportal_browser_notifications";
let bellAvailable = true;
let bellLoaded = false;

export function setUnread(count) {
  if (!badge) return;
  const n = Number(count) || 0;
  // "99+" past 99: the header keeps one row whatever the count (the exact number is
  // in the label and data-count).
  badge.textContent = n > 99 ? `${formatNumber(99)}+` : formatNumber(n);
  badge.title = formatNumber(n);
  badge.dataset.count = String(n);
  badge.hidden = n === 0;
}

function notificationItem(n) {
  const { title, body } = describeNotification(n);
  const item = el("li", n.read_at ? "" : "unread");
  item.dataset.notificationId = String(n.id ?? "");
  const link = el("a", "", title);
  link.href = notificationLink(n);
  item.append(link, el("small", "", body), el("small", "", formatAgo(n.created_at)));
  return item;
}

function bellUnavailable() {
  bellAvailable = false;
  if (bellEmpty) bellEmpty.textContent = t("bell.unavailable");
}

async function loadUnread() {
  try {
    const data = await api("/api/v1/notifications/unread-count");
    setUnread(typeof data === "number" ? data : (data.unread ?? data.count ?? 0));
  } catch (error) {
    if (error.status === 404) bellUnavailable();
  }
}

async function loadBellList() {
  if (!bellList || !bellAvailable) return;
  try {
    const data = await api("/api/v1/notifications?limit=10");
    const items = Array.isArray(data) ? data : data.items || [];
    bellList.replaceChildren(...items.map(notificationItem));
    if (bellEmpty) bellEmpty.hidden = items.length > 0;
    if (data && typeof data.unread === "number") setUnread(data.unread);
    bellLoaded = true;
    if (items.some((n) => !n.read_at)) showMarkRead();
  } catch (error) {
    if (error.status === 404) bellUnavailable();
  }
}

let markButton = null;
function showMarkRead() {
  if (markButton || !bellList) return;
  markButton = el("button", "button small", t("bell.mark_read"));
  markButton.type = "button";
  markButton.dataset.testid = "bell-mark-read";
  markButton.addEventListener("click", async () => {
    try {
      const data = await api("/api/v1/notifications/read-all", { method: "POST" });
      setUnread(data && typeof data.unread === "number" ? data.unread : 0);
      for (const item of bellList.querySelectorAll("li.unread")) item.classList.remove("unread");
    } catch {
      // The count stays as it was.
    }
  });
  bellList.after(markButton);
}

if (bell) {
  bell.addEventListener("toggle", () => {
    if (bell.open) loadBellList();
  });
}

function browserNotificationsOn() {
  return (
    "Notification" in window &&
    Notification.permission === "granted" &&
    localStorage.getItem(NOTIFY_KEY) === "on"
  );
}

if (browserButton && "Notification" in window && Notification.permission !== "denied") {
  const label = () => {
    browserButton.textContent = browserNotificationsOn() ? t("bell.enabled") : t("bell.enable");
    browserButton.setAttribute("aria-pressed", String(browserNotificationsOn()));
  };
  browserButton.hidden = false;
  label();
  browserButton.addEventListener("click", async () => {
    if (browserNotificationsOn()) {
      localStorage.removeItem(NOTIFY_KEY);
    } else {
      const permission = await Notification.requestPermission();
      if (permission === "granted") localStorage.setItem(NOTIFY_KEY, "on");
      else browserButton.textContent = t("bell.denied");
    }
    label();
  });
}

live.on("notification", (message) => {
  if (typeof message.unread === "number") setUnread(message.unread);
  const n = message.notification;
  if (!n) return;
  if (bellList && bellLoaded) {
    bellList.prepend(notificationItem(n));
    if (bellEmpty) bellEmpty.hidden = true;
    showMarkRead();
  }
  document.dispatchEvent(new CustomEvent("hpcportal:notification", { detail: n }));
  if (browserNotificationsOn() && document.hidden) {
    const { title, body } = describeNotification(n);
    const shown = new Notification(title, { body, tag: `hpcportal-${n.id}` });
    shown.onclick = () => {
      window.focus();
      if (n.job_id) location.assign(`/jobs/${encodeURIComponent(n.job_id)}`);
    };
  }
});
live.on("hello", () => {
  if (badge) loadUnread();
});

if (username) {
  if (badge) {
    loadUnread();
    live.addPoller(async () => {
      if (bellAvailable) await loadUnread();
    });
  }
  // Page modules register their handlers first: start once every module ran.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", live.start);
  } else {
    live.start();
  }
}

export { notificationItem };
