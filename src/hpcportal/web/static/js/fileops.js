// The file manager's second half: copy and move, search, the trash with restore, free
// space and quota, and refreshing the listing in place. Everything goes through the
// files API; names and paths from users only reach the page as text.

import { api, ApiError, el, formatDate, showResult, t, toast } from "./core.js";

const manager = document.getElementById("file-manager");

/** The API URL of a path in a file area, each segment encoded. */
export function fileUrl(root, path = "", query = "") {
  const segments = path ? "/" + path.split("/").map(encodeURIComponent).join("/") : "";
  return `/api/v1/files/${encodeURIComponent(root)}${segments}${query ? `?${query}` : ""}`;
}

/** The file manager page of a folder or a file (a file opens in the preview). */
export function pageUrl(root, path = "") {
  const segments = path ? "/" + path.split("/").map(encodeURIComponent).join("/") : "";
  const hidden = new URLSearchParams(location.search).get("hidden") ? "?hidden=1" : "";
  return `/files/${encodeURIComponent(root)}${segments}${hidden}`;
}

export function joinPath(folder, name) {
  return folder ? `${folder}/${name}` : name;
}

export function validName(name) {
  return name && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}

export function formatSize(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = { maximumFractionDigits: unit ? 1 : 0 };
  return `${new Intl.NumberFormat(document.documentElement.lang, digits).format(value)} ${units[unit]}`;
}

/** The same SVG icon the server draws (the sprite is in the page). */
export function icon(kind) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "icon file-icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.dataset.icon = kind;
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#icon-${kind}`);
  svg.append(use);
  return svg;
}

const ICONS = { directory: "folder", file: "file", symlink: "link" };

function result() {
  return document.getElementById("file-result");
}

// --- The listing, refreshed in place ---------------------------------------------------------

/** Fetch this page again and swap in its rows and count: no reload, and the old rows stay
 * until the new ones are there (so the list never shows an empty state in between). */
export async function refreshList() {
  const response = await fetch(location.href, { credentials: "same-origin" }).catch(() => null);
  if (!response || !response.ok) return false;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  const rows = fresh.querySelector("[data-testid=file-list] tbody");
  const tbody = manager.querySelector("[data-testid=file-list] tbody");
  if (!rows || !tbody) return false;
  const selected = tbody.querySelector("tr[aria-selected]")?.dataset.path;
  tbody.replaceChildren(...rows.children);
  if (selected) {
    const row = [...tbody.querySelectorAll("tr[data-path]")].find((r) => r.dataset.path === selected);
    row?.setAttribute("aria-selected", "true");
  }
  const count = fresh.getElementById("file-count");
  if (count) document.getElementById("file-count").textContent = count.textContent;
  return true;
}

/** A row for a file that just arrived, until the refreshed listing replaces it. */
export function provisionalRow(name, size) {
  const tbody = manager.querySelector("[data-testid=file-list] tbody");
  tbody.querySelector("tr.empty-row")?.remove();
  const row = el("tr");
  row.dataset.pending = "true";
  row.dataset.testid = "file-row";
  const cell = el("th", "file-name");
  cell.scope = "row";
  cell.translate = false;
  cell.append(icon("file"), name);
  row.append(cell, el("td", "num", formatSize(size)), el("td"), el("td"), el("td"), el("td"));
  tbody.append(row);
}

export async function act(work, done) {
  try {
    await work();
    toast(done);
    showResult(result(), done);
    await refreshList();
  } catch (error) {
    showResult(result(), error instanceof ApiError ? error.message : t("error.generic"), true);
  }
}

// --- Copy and move ---------------------------------------------------------------------------

function askDestination(title, { root, folder, name }) {
  const dialog = document.getElementById("dest-dialog");
  const rootInput = document.getElementById("dest-root");
  const folderInput = document.getElementById("dest-folder");
  const nameInput = document.getElementById("dest-name");
  document.getElementById("dest-dialog-title").textContent = title;
  rootInput.value = root;
  folderInput.value = folder;
  nameInput.value = name;
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "ok") return resolve(null);
        const where = folderInput.value.trim().replace(/^\/+|\/+$/g, "");
        resolve({ root: rootInput.value, folder: where, name: nameInput.value.trim() });
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    nameInput.focus();
    nameInput.select();
  });
}

function copyName(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? `${name.slice(0, dot)}-copy${name.slice(dot)}` : `${name}-copy`;
}

/** Copy or move a row's file or folder to a place the person names. */
export async function transfer(op, root, folder, row) {
  const old = row.dataset.name;
  const title = t(op === "copy" ? "files.copy_title" : "files.move_title", { name: old });
  const wanted = await askDestination(title, { root, folder, name: op === "copy" ? copyName(old) : old });
  if (!wanted) return;
  if (!validName(wanted.name) || wanted.folder.split("/").some((p) => p === "..")) {
    showResult(result(), t("files.bad_name"), true);
    return;
  }
  const to = joinPath(wanted.folder, wanted.name);
  const where = `${wanted.root}:${to}`;
  await act(
    () => api(fileUrl(root, row.dataset.path), { method: "POST", json: { op, to, to_root: wanted.root } }),
    t(op === "copy" ? "files.copied" : "files.moved", { name: old, where }),
  );
}

// --- Search ----------------------------------------------------------------------------------

function searchItem(root, item) {
  const li = el("li", "search-hit");
  const link = el("a");
  link.href = pageUrl(root, item.path);
  link.append(icon(ICONS[item.type] || "other"), item.path);
  li.append(link);
  if (item.match && item.match.text) li.append(el("small", "muted search-match", item.match.text));
  return li;
}

function searchSummary(end, found) {
  if (!end) return t("files.search_cut");
  if (end.truncated) return t("files.search_truncated", { count: found });
  return found ? t("files.search_found", { count: found }) : t("files.search_none");
}

/** Stream the helper's matches (JSON lines) into the results list as they arrive. */
export async function search(root, folder, form) {
  const panel = document.getElementById("search-results");
  const list = document.getElementById("search-list");
  const status = document.getElementById("search-status");
  const query = new URLSearchParams({ search: form.glob.value.trim() || "*" });
  if (form.content.value) query.set("content", form.content.value);
  if (new URLSearchParams(location.search).get("hidden")) query.set("hidden", "1");
  panel.hidden = false;
  list.replaceChildren();
  status.textContent = t("files.searching");
  const response = await fetch(fileUrl(root, folder, query.toString()), { credentials: "same-origin" }).catch(
    () => null,
  );
  if (!response) return showResult(status, t("error.network"), true);
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    return showResult(status, data.detail || t("error.generic"), true);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let found = 0;
  let end = null;
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    const lines = buffer.split("\n");
    buffer = done ? "" : lines.pop();
    for (const line of lines) {
      if (!line.trim()) continue;
      const item = JSON.parse(line);
      if (item.done) end = item;
      else if (item.path !== undefined && item.name !== undefined) {
        list.append(searchItem(root, item));
        found += 1;
      }
    }
    if (done) break;
  }
  showResult(status, searchSummary(end, found));
}

// --- Trash and restore -----------------------------------------------------------------------

function dirname(path) {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "" : path.slice(0, cut);
}

function trashRow(item, reload) {
  const row = el("tr");
  row.dataset.testid = "trash-row";
  row.dataset.name = item.name;
  const name = el("th", "file-name");
  name.scope = "row";
  name.translate = false;
  name.append(icon(ICONS[item.type] || "other"), item.name);
  const place = el("td", "", `${item.root ?? item.root_path}:${dirname(item.path) || "/"}`);
  place.translate = false;
  const when = el("td", "", formatDate(item.deleted_at));
  const actions = el("td", "row-actions");
  const restore = el("button", "button small", t("files.restore"));
  restore.type = "button";
  restore.dataset.testid = "trash-restore";
  restore.setAttribute("aria-label", t("files.restore_name", { name: item.name }));
  restore.disabled = !item.root;
  restore.addEventListener("click", async () => {
    restore.disabled = true;
    await act(
      () => api(fileUrl(item.root, item.path), { method: "POST", json: { op: "restore", trash_id: item.id } }),
      t("files.restored", { name: item.name }),
    );
    await reload();
  });
  actions.append(restore);
  row.append(name, place, when, actions);
  // The column names, for the stacked rows of a narrow screen (as the server's tables).
  const labels = [...document.querySelectorAll("[data-testid=trash-list] thead th")].map((th) => th.textContent);
  [...row.children].forEach((cell, i) => {
    if (labels[i] && i < 3) cell.dataset.label = labels[i];
  });
  return row;
}

/** The trash panel: what you deleted, newest first, each with a Restore button. */
export async function showTrash() {
  const rows = document.getElementById("trash-rows");
  const status = document.getElementById("trash-status");
  status.textContent = t("files.loading");
  try {
    const items = await api("/api/v1/files-trash");
    rows.replaceChildren(...items.map((item) => trashRow(item, showTrash)));
    status.textContent = items.length ? t("files.trash_count", { count: items.length }) : t("files.trash_empty");
  } catch (error) {
    showResult(status, error instanceof ApiError ? error.message : t("error.generic"), true);
  }
}

// --- Free space and quota --------------------------------------------------------------------

function usageBlock(area, report) {
  const block = el("div", "usage-area");
  block.dataset.testid = "usage-area";
  block.dataset.root = area.name;
  block.append(el("h3", "", area.name));
  if (area.space) {
    const { total, available, percent } = area.space;
    const meter = el("meter");
    meter.min = 0;
    meter.max = 100;
    meter.high = 90;
    meter.value = percent;
    meter.setAttribute("aria-label", t("files.disk_used", { name: area.name }));
    const free = el("p", "", t("files.space_free", { free: formatSize(available), total: formatSize(total) }));
    free.dataset.testid = "usage-space";
    block.append(meter, free);
  } else if (area.error) {
    block.append(el("p", "muted", area.error));
  }
  let quota;
  if (area.quota) {
    quota = t("files.quota_used", {
      used: formatSize(area.quota.used),
      limit: formatSize(area.quota.hard || area.quota.soft),
    });
  } else {
    quota = report.quota_known ? t("files.quota_none") : t("files.quota_unknown");
  }
  const line = el("p", area.quota?.over ? "form-result error" : "muted", quota);
  line.dataset.testid = "usage-quota";
  if (report.quota_note) line.title = report.quota_note;
  block.append(line);
  return block;
}

/** Free space and quota of the current file area (asked as the user, once per page). */
export async function showUsage(box) {
  try {
    const report = await api("/api/v1/files-usage");
    const current = report.roots.filter((r) => r.name === box.dataset.root);
    box.replaceChildren(
      el("h2", "", t("files.storage")),
      ...(current.length ? current : report.roots).map((area) => usageBlock(area, report)),
    );
  } catch (error) {
    box.replaceChildren(el("p", "muted", error instanceof ApiError ? error.message : t("error.generic")));
  }
}
