// Shared helpers: translated strings, the JSON API with CSRF, formatting, messages.
// Data from the server is only ever put into the page as text (textContent).

const catalogElement = document.getElementById("i18n-catalog");
const catalog = catalogElement ? JSON.parse(catalogElement.textContent || "{}") : {};

export const lang = document.documentElement.lang || "en";
export const username = document.body.dataset.user || "";
export const isAdmin = document.body.dataset.admin === "true";

/** A string of the page's catalog, with %(name)s placeholders filled in. */
export function t(key, params = {}) {
  const text = Object.prototype.hasOwnProperty.call(catalog, key) ? catalog[key] : key;
  return text.replace(/%\((\w+)\)s/g, (match, name) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : match,
  );
}

const numberFormat = new Intl.NumberFormat(lang);
const dateFormat = new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "short" });
const longDateFormat = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (!digits) return numberFormat.format(value);
  return new Intl.NumberFormat(lang, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
}

export function formatDate(iso, long = false) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return (long ? longDateFormat : dateFormat).format(date);
}

/** "5 minutes ago" in the page's language. */
export function formatAgo(iso) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  const units = [
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return rtf.format(Math.round(seconds / size), unit);
  }
  return rtf.format(Math.round(seconds), "second");
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function setCookie(name, value, days = 365) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie =
    `${name}=${encodeURIComponent(value)}; Max-Age=${days * 86400}; Path=/; SameSite=Lax` + secure;
}

export const csrfToken = () => cookie("hpcportal_csrf");

/** Go to the login page and come back here afterwards. */
export function loginRedirect(reason = "expired") {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}&reason=${encodeURIComponent(reason)}`);
}

export class ApiError extends Error {
  constructor(status, message, code = "", data = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

/**
 * Call the JSON API as the logged-in user. Unsafe methods carry the CSRF header;
 * a 401 (expired session) goes to the login page.
 */
export async function api(path, { method = "GET", json, body, headers = {}, quiet401 = false } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (!["GET", "HEAD"].includes(method)) sent["X-CSRF-Token"] = csrfToken();
  let payload = body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body: payload, credentials: "same-origin" });
  } catch {
    throw new ApiError(0, t("error.network"), "network");
  }
  if (response.status === 401 && !quiet401) {
    loginRedirect("expired");
    throw new ApiError(401, t("session.expired"), "not_authenticated");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : t("error.generic");
    throw new ApiError(response.status, detail, (data && data.code) || "", data);
  }
  return data;
}

let toastTimer = 0;

/** A short message at the bottom of the screen, read out by screen readers. */
export function toast(message, ms = 4000) {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, ms);
}

/** Show a result next to a form: text only, "error" styling when it failed. */
export function showResult(element, message, isError = false) {
  if (!element) return;
  element.textContent = message;
  element.classList.toggle("error", isError);
}

/** A new Idempotency-Key for one form instance. */
export function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

const DISK_AREAS = ["shared", "scratch", "quota", "area"];

/** A percentage (0-100) in the page's language: "80.5%", "80.5 %", ... */
export function formatPercent(value) {
  const number = Number(value);
  if (value === null || value === undefined || Number.isNaN(number)) return "?";
  return new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 }).format(
    number / 100,
  );
}

/** A disk alert (kind "disk"): warning, critical, or back below the threshold. */
function describeDiskNotification(n) {
  const p = n.params || {};
  const event = n.event || "";
  const area = DISK_AREAS.includes(p.area) ? p.area : "shared";
  const state = event === "disk_cleared" ? "cleared" : "active";
  const params = {
    name: String(p.name || n.target || ""),
    percent: formatPercent(p.percent),
    threshold: formatPercent(p.threshold),
  };
  const titleKey = `notify.${event}.title`;
  const bodyKey = `notify.disk.${area}.${state}`;
  const title = t(titleKey) === titleKey ? n.title : t(titleKey);
  const text = t(bodyKey) === bodyKey ? n.body : t(bodyKey, params);
  return { title: title || "", body: text || "" };
}

/** Where a notification leads: the job, the node of a scratch alert, your files. */
export function notificationLink(n) {
  if (n.kind === "disk") {
    const area = (n.params || {}).area;
    if (area === "quota" || area === "area") return "/files";
    if (area === "scratch" && n.params.name) return `/nodes/${encodeURIComponent(n.params.name)}`;
    return "#";
  }
  if (n.kind === "report") return `/reports#report-${encodeURIComponent((n.params || {}).report_id || "")}`;
  if (n.kind === "alert") return "/admin/monitoring";
  if (n.job_id && n.event === "gpu_idle") return `/jobs/${encodeURIComponent(n.job_id)}#graphs-title`;
  return n.job_id ? `/jobs/${encodeURIComponent(n.job_id)}` : "#";
}

/** A notification's title and body in the page's language (English from the server otherwise). */
export function describeNotification(n) {
  if (n.kind === "disk") return describeDiskNotification(n);
  const params = { ...(n.params || {}) };
  params.job_id = params.job_id || n.job_id || "";
  params.job_name = params.job_name || "";
  const event = n.event || "";
  const titleKey = `notify.${event}.title`;
  let bodyKey = `notify.${event}.body`;
  if (event === "started" && !params.nodes) bodyKey = "notify.started.body_plain";
  if (event === "failed" && !params.exit_code) bodyKey = "notify.failed.body_plain";
  if (event === "time_limit" && params.percent_used) bodyKey = "notify.time_limit.body_percent";
  if (n.kind === "alert") bodyKey = ""; // Prometheus' own summary, as the rule wrote it
  const title = t(titleKey) === titleKey ? n.title : t(titleKey, params);
  const text = t(bodyKey) === bodyKey ? n.body : t(bodyKey, params);
  return { title: title || "", body: text || "" };
}

/** Create an element with a class and text (never HTML). */
export function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}
