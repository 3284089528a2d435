// The file manager: previews, the small text editor, actions and resumable uploads
// (tus) on top of the files API; copy, move, search, trash and storage are in
// fileops.js. File names come from users: they only ever reach the page as text
// (textContent, attributes set through the DOM), never as HTML.

import { api, ApiError, csrfToken, el, showResult, t, toast } from "./core.js";
import {
  act,
  fileUrl,
  formatSize,
  joinPath,
  provisionalRow,
  refreshList,
  search,
  showTrash,
  showUsage,
  transfer,
  validName,
} from "./fileops.js";

export { fileUrl };

const manager = document.getElementById("file-manager");
const TUS = "/api/v1/uploads/tus";
const CHUNK = 4 * 1024 * 1024;
const RETRIES = 5;
const PARALLEL = 3;

function base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

// --- The name dialog (new folder, rename) -------------------------------------------------

function askName(title, value = "") {
  const dialog = document.getElementById("name-dialog");
  const input = document.getElementById("name-input");
  document.getElementById("name-dialog-title").textContent = title;
  input.value = value;
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" ? input.value.trim() : ""),
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
    input.select();
  });
}

// --- Actions --------------------------------------------------------------------------------

async function makeFolder(root, folder) {
  const name = await askName(t("files.new_folder"));
  if (!name) return;
  if (!validName(name)) return showResult(document.getElementById("file-result"), t("files.bad_name"), true);
  await act(
    () => api(fileUrl(root, joinPath(folder, name)), { method: "POST", json: { op: "mkdir" } }),
    t("files.created", { name }),
  );
}

async function rename(root, folder, row) {
  const old = row.dataset.name;
  const name = await askName(t("files.rename", { name: old }), old);
  if (!name || name === old) return;
  if (!validName(name)) return showResult(document.getElementById("file-result"), t("files.bad_name"), true);
  await act(
    () =>
      api(fileUrl(root, row.dataset.path), {
        method: "POST",
        json: { op: "rename", to: joinPath(folder, name) },
      }),
    t("files.renamed", { name }),
  );
}

async function remove(root, row) {
  if (!window.confirm(t("files.confirm_delete", { name: row.dataset.name }))) return;
  await act(
    () => api(fileUrl(root, row.dataset.path), { method: "DELETE" }),
    t("files.deleted", { name: row.dataset.name }),
  );
}

// --- Preview and editor ---------------------------------------------------------------------

const preview = {
  pane: document.getElementById("file-preview"),
  body: document.getElementById("preview-body"),
  meta: document.getElementById("preview-meta"),
  edit: document.getElementById("preview-edit"),
  form: document.getElementById("editor-form"),
  text: document.getElementById("editor-text"),
  result: document.getElementById("editor-result"),
  current: null,
};

function tableOf(data) {
  const table = el("table", "data compact preview-table");
  const head = el("tr");
  for (const name of data.columns) head.append(el("th", "", name));
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  for (const row of data.rows) {
    const tr = el("tr");
    for (const cell of row) tr.append(el("td", "", cell));
    tbody.append(tr);
  }
  table.append(thead, tbody);
  const wrap = el("div", "table-wrap");
  wrap.append(table);
  return wrap;
}

async function openPreview(root, row) {
  const path = row.dataset.path;
  const name = row.dataset.name;
  const url = fileUrl(root, path, "preview=1");
  const download = fileUrl(root, path, "download=1");
  for (const other of manager.querySelectorAll("tr[aria-selected]")) other.removeAttribute("aria-selected");
  row.setAttribute("aria-selected", "true");
  preview.pane.hidden = false;
  preview.form.hidden = true;
  preview.edit.hidden = true;
  document.getElementById("preview-title").textContent = name;
  document.getElementById("preview-download").href = download;
  preview.meta.textContent = formatSize(Number(row.dataset.size || 0));
  preview.body.replaceChildren(el("p", "muted", t("files.loading")));
  preview.current = { root, path, name, etag: "", content: "" };
  const controller = new AbortController();
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", signal: controller.signal });
  } catch {
    preview.body.replaceChildren(el("p", "form-result error", t("error.network")));
    return;
  }
  const type = (response.headers.get("content-type") || "").split(";")[0].trim();
  const attachment = (response.headers.get("content-disposition") || "").startsWith("attachment");
  if (!response.ok) {
    controller.abort();
    let message = t("error.generic");
    if (type === "application/json") message = (await response.json().catch(() => ({}))).detail || message;
    preview.body.replaceChildren(el("p", "form-result error", message));
    return;
  }
  if (type === "application/json") {
    const data = await response.json();
    if (data.kind === "table") {
      preview.body.replaceChildren(tableOf(data));
    } else {
      const pre = el("pre", "code file-text", data.content);
      preview.body.replaceChildren(pre);
      preview.current.etag = data.etag;
      preview.current.content = data.content;
      const max = Number(manager.dataset.editMax || 0);
      preview.edit.hidden = data.truncated || data.size > max || manager.dataset.writable !== "true";
    }
    if (data.truncated) preview.body.append(el("p", "muted", t("files.truncated")));
    return;
  }
  controller.abort();
  if (!attachment && type.startsWith("image/")) {
    const image = el("img", "preview-image");
    image.alt = t("files.image_of", { name });
    image.src = url;
    preview.body.replaceChildren(image);
  } else if (!attachment && type === "application/pdf") {
    const object = el("object", "preview-pdf");
    object.type = "application/pdf";
    object.data = url;
    const link = el("a", "", t("files.open_pdf"));
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    object.append(link);
    preview.body.replaceChildren(object);
  } else {
    const link = el("a", "button small", t("files.download_only"));
    link.href = download;
    link.download = "";
    preview.body.replaceChildren(el("p", "muted", t("files.no_preview")), link);
  }
}

function startEditing() {
  preview.form.hidden = false;
  preview.body.hidden = true;
  preview.edit.hidden = true;
  preview.text.value = preview.current.content;
  showResult(preview.result, "");
  preview.text.focus();
}

function stopEditing() {
  preview.form.hidden = true;
  preview.body.hidden = false;
  preview.edit.hidden = false;
}

async function save(event) {
  event.preventDefault();
  const current = preview.current;
  if (!current) return;
  const response = await fetch(fileUrl(current.root, current.path), {
    method: "PUT",
    credentials: "same-origin",
    headers: {
      "Content-Type": "text/plain; charset=utf-8",
      "If-Match": `"${current.etag}"`,
      "X-CSRF-Token": csrfToken(),
    },
    body: preview.text.value,
  }).catch(() => null);
  if (!response) return showResult(preview.result, t("error.network"), true);
  if (response.status === 412) return showResult(preview.result, t("files.conflict"), true);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) return showResult(preview.result, data.detail || t("error.generic"), true);
  current.etag = data.etag;
  current.content = preview.text.value;
  preview.body.replaceChildren(el("pre", "code file-text", current.content));
  showResult(preview.result, t("files.saved"));
  toast(t("files.saved"));
}

// --- Resumable uploads (tus 1.0) ------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function tusHeaders(extra = {}) {
  return { "Tus-Resumable": "1.0.0", "X-CSRF-Token": csrfToken(), ...extra };
}

async function tusError(response) {
  const data = await response.json().catch(() => ({}));
  return new ApiError(response.status, data.detail || t("error.generic"));
}

/** Create the upload with its first chunk in the same request (tus creation-with-upload):
 * a small file is whole after this one request. */
async function createUpload(file, root, folder) {
  const metadata = [
    `filename ${base64(file.name)}`,
    `root ${base64(root)}`,
    `folder ${base64(folder)}`,
  ].join(",");
  const response = await fetch(TUS, {
    method: "POST",
    credentials: "same-origin",
    headers: tusHeaders({
      "Upload-Length": String(file.size),
      "Upload-Metadata": metadata,
      "Content-Type": "application/offset+octet-stream",
    }),
    body: file.slice(0, CHUNK),
  });
  if (!response.ok) throw await tusError(response);
  return { location: response.headers.get("Location"), offset: Number(response.headers.get("Upload-Offset") || 0) };
}

async function currentOffset(location) {
  const response = await fetch(location, { method: "HEAD", credentials: "same-origin", headers: tusHeaders() });
  if (!response.ok) throw new ApiError(response.status, t("files.upload_gone"));
  return Number(response.headers.get("Upload-Offset"));
}

/** Send one file in chunks; on a dropped connection ask where to resume and go on. */
export async function tusUpload(file, root, folder, onProgress) {
  onProgress(0);
  const created = await createUpload(file, root, folder);
  const location = created.location;
  let offset = created.offset;
  let failures = 0;
  onProgress(offset);
  while (offset < file.size) {
    try {
      const response = await fetch(location, {
        method: "PATCH",
        credentials: "same-origin",
        headers: tusHeaders({
          "Upload-Offset": String(offset),
          "Content-Type": "application/offset+octet-stream",
        }),
        body: file.slice(offset, offset + CHUNK),
      });
      if (response.status === 409) {
        offset = await currentOffset(location);
        continue;
      }
      if (!response.ok) throw await tusError(response);
      offset = Number(response.headers.get("Upload-Offset"));
      failures = 0;
      onProgress(offset);
    } catch (error) {
      if (error instanceof ApiError) throw error;
      failures += 1;
      if (failures > RETRIES) throw new ApiError(0, t("error.network"));
      await sleep(Math.min(1000 * 2 ** failures, 15000));
      offset = await currentOffset(location).catch(() => offset);
    }
  }
  onProgress(file.size);
}

async function uploadOne(file, root, folder, list) {
  const item = el("li", "upload");
  const label = el("span", "upload-name", file.name);
  label.translate = false;
  const bar = el("progress");
  bar.max = Math.max(file.size, 1);
  bar.value = 0;
  bar.setAttribute("aria-label", t("files.uploading", { name: file.name }));
  const status = el("span", "muted", t("submit.uploading"));
  item.append(label, bar, status);
  list.append(item);
  try {
    await tusUpload(file, root, folder, (sent) => {
      bar.value = sent;
      status.textContent = `${formatSize(sent)} / ${formatSize(file.size)}`;
    });
    bar.value = bar.max;
    status.textContent = t("files.uploaded");
    item.dataset.done = "true";
    provisionalRow(file.name, file.size);
    return true;
  } catch (error) {
    status.textContent = error instanceof ApiError ? error.message : t("error.generic");
    status.className = "form-result error";
    return false;
  }
}

/** Upload a few files at a time; each shows in the list as soon as it is whole, and the
 * list is refreshed in place (no reload) once all are done. */
async function uploadAll(files, root, folder) {
  const list = document.getElementById("upload-list");
  const queue = [...files];
  let ok = 0;
  const worker = async () => {
    while (queue.length) {
      if (await uploadOne(queue.shift(), root, folder, list)) ok += 1;
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
  if (ok) {
    toast(t("files.uploaded_count", { count: ok }));
    await refreshList();
  }
}

// --- Wiring -----------------------------------------------------------------------------------

if (manager) {
  const root = manager.dataset.root;
  const folder = manager.dataset.folder || "";
  document.getElementById("file-mkdir").addEventListener("click", () => makeFolder(root, folder));
  manager.querySelector("[data-testid=file-list] tbody").addEventListener("click", (event) => {
    const target = event.target.closest("[data-open], [data-action]");
    const row = event.target.closest("tr[data-path]");
    if (!target || !row) return;
    if (target.matches("[data-open]")) {
      if (event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      history.replaceState(null, "", target.href);
      openPreview(root, row);
    } else if (target.dataset.action === "rename") {
      rename(root, folder, row);
    } else if (target.dataset.action === "delete") {
      remove(root, row);
    } else if (target.dataset.action === "copy" || target.dataset.action === "move") {
      transfer(target.dataset.action, root, folder, row);
    }
  });
  const searchForm = document.getElementById("file-search");
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    search(root, folder, searchForm);
  });
  document.getElementById("search-close").addEventListener("click", () => {
    document.getElementById("search-results").hidden = true;
  });
  const trashButton = document.getElementById("file-trash");
  trashButton.addEventListener("click", () => {
    const panel = document.getElementById("trash-panel");
    panel.hidden = !panel.hidden;
    trashButton.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) showTrash();
  });
  document.getElementById("preview-close").addEventListener("click", () => {
    preview.pane.hidden = true;
  });
  preview.edit.addEventListener("click", startEditing);
  document.getElementById("editor-cancel").addEventListener("click", stopEditing);
  preview.form.addEventListener("submit", save);

  const input = document.getElementById("file-upload");
  input.addEventListener("change", () => {
    if (input.files.length) uploadAll([...input.files], root, folder);
    input.value = "";
  });
  const drop = document.getElementById("file-drop");
  const zone = manager;
  zone.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    drop.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) drop.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    drop.classList.remove("dragging");
    uploadAll([...event.dataTransfer.files], root, folder);
  });

  const selected = manager.dataset.selected;
  if (selected) {
    const row = [...manager.querySelectorAll("tr[data-path]")].find((r) => r.dataset.path === selected);
    if (row) openPreview(root, row);
  }
}

const usageBox = document.getElementById("file-usage");
if (usageBox) showUsage(usageBox);
