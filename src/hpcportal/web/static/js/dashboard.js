// The home dashboard: gridstack widgets a person can add, move, resize and remove,
// saved per user through PUT /api/v1/dashboard/layouts. Also the quick-submit and
// notifications widgets.

import { notificationItem } from "./app.js";
import { api, el, newKey, showResult, t, toast } from "./core.js";

const GridStack = window.GridStack;
const gridElement = document.getElementById("dashboard-grid");
const editButton = document.getElementById("dashboard-edit");
const tools = document.getElementById("dashboard-tools");
const addSelect = document.getElementById("widget-add");
const presetSelect = document.getElementById("preset-pick");
const resetButton = document.getElementById("dashboard-reset");
const doneButton = document.getElementById("dashboard-done");
const COLUMNS = 12;
// The tallest a widget can be resized to (rows of 80 px): about a window's height.
const MAX_WIDGET_ROWS = 10;
let grid = null;
let editing = false;
let saveTimer = 0;

function widgetName(item) {
  return item.querySelector(".widget-handle")?.textContent?.trim() || item.dataset.widget;
}

function layout() {
  return grid
    .save(false)
    .filter((w) => w.id)
    .map((w) => ({ type: w.id, x: w.x ?? 0, y: w.y ?? 0, w: w.w ?? 1, h: w.h ?? 1 }));
}

function scheduleSave() {
  if (!grid || grid.getColumn() !== COLUMNS) return; // a phone's one-column view is not saved
  clearTimeout(saveTimer);
  saveTimer = setTimeout(async () => {
    try {
      await api("/api/v1/dashboard/layouts", { method: "PUT", json: { widgets: layout() } });
      gridElement.dataset.source = "saved";
      toast(t("dashboard.saved"), 1500);
    } catch (error) {
      toast(error.message);
    }
  }, 400);
}

function setEditing(on) {
  editing = on;
  editButton.setAttribute("aria-pressed", String(on));
  tools.hidden = !on;
  gridElement.classList.toggle("editing", on);
  for (const box of gridElement.querySelectorAll("[data-edit-only]")) box.hidden = !on;
  if (grid) grid.setStatic(!on);
  if (on) addSelect.focus();
}

function syncAddOptions() {
  const present = new Set([...gridElement.querySelectorAll("[data-widget]")].map((w) => w.dataset.widget));
  for (const option of addSelect.options) {
    if (!option.value) continue;
    option.hidden = present.has(option.value);
    option.disabled = present.has(option.value);
  }
  addSelect.value = "";
}

function removeWidget(item) {
  grid.removeWidget(item);
  syncAddOptions();
  scheduleSave();
  addSelect.focus();
}

function move(item, direction) {
  const node = item.gridstackNode;
  if (!node) return;
  const change = { x: node.x, y: node.y, w: node.w, h: node.h };
  if (direction === "left") change.x = Math.max(0, node.x - 1);
  if (direction === "right") change.x = Math.min(COLUMNS - node.w, node.x + 1);
  // Up and down jump over the neighbouring widget (the grid packs widgets upwards).
  const others = grid.engine.nodes.filter((n) => n !== node && n.x < node.x + node.w && node.x < n.x + n.w);
  if (direction === "up") {
    // Moving up is moving the widget above below this one; the grid packs the rest.
    const above = others.filter((n) => n.y < node.y).sort((a, b) => b.y - a.y)[0];
    if (!above) return;
    grid.update(above.el, { y: node.y + node.h });
    scheduleSave();
    return;
  }
  if (direction === "down") {
    const below = others.filter((n) => n.y > node.y).sort((a, b) => a.y - b.y)[0];
    change.y = below ? below.y + below.h : node.y + node.h;
  }
  if (direction === "narrower") change.w = Math.max(2, node.w - 1);
  if (direction === "wider") change.w = Math.min(COLUMNS - node.x, node.w + 1);
  grid.update(item, change);
  scheduleSave();
}

function wire(item) {
  item.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || !item.contains(button)) return;
    if (button.hasAttribute("data-remove")) removeWidget(item);
    else if (button.dataset.move) move(item, button.dataset.move);
  });
  for (const box of item.querySelectorAll("[data-edit-only]")) box.hidden = !editing;
  // A saved layout may be taller (the API allows 24 rows): never shrink it here.
  const rows = item.gridstackNode?.h ?? 1;
  grid.update(item, { maxH: Math.max(MAX_WIDGET_ROWS, rows) });
  setupWidget(item);
}

async function addWidget(kind) {
  if (!kind || gridElement.querySelector(`[data-widget="${CSS.escape(kind)}"]`)) return;
  await window.htmx.ajax("GET", `/partials/widgets/${encodeURIComponent(kind)}`, {
    target: gridElement,
    swap: "beforeend",
  });
  const item = gridElement.querySelector(`[data-widget="${CSS.escape(kind)}"]`);
  if (!item) return;
  item.removeAttribute("gs-x");
  item.removeAttribute("gs-y");
  item.setAttribute("gs-auto-position", "true");
  grid.makeWidget(item);
  wire(item);
  syncAddOptions();
  scheduleSave();
  item.querySelector(".widget-handle")?.scrollIntoView({ block: "nearest" });
}

async function reset() {
  // The preset replaces the whole layout: ask first.
  const preset = presetSelect.selectedOptions[0]?.textContent?.trim() || presetSelect.value;
  if (!window.confirm(t("dashboard.confirm_reset", { preset }))) return;
  try {
    await api("/api/v1/dashboard/layouts/reset", {
      method: "POST",
      json: { preset: presetSelect.value || "default" },
    });
    toast(t("dashboard.reset"), 1500);
    location.reload();
  } catch (error) {
    toast(error.message);
  }
}

// --- Widgets with behaviour -----------------------------------------------------------------

async function fillNotifications(item) {
  const list = item.querySelector("[data-notifications-list]");
  const empty = item.querySelector("[data-notifications-empty]");
  if (!list) return;
  try {
    const data = await api("/api/v1/notifications?limit=5");
    const items = Array.isArray(data) ? data : data.items || [];
    list.replaceChildren(...items.map(notificationItem));
    if (empty) empty.hidden = items.length > 0;
  } catch (error) {
    if (empty) empty.textContent = error.status === 404 ? t("bell.unavailable") : error.message;
  }
}

document.addEventListener("hpcportal:notification", (event) => {
  const list = gridElement.querySelector("[data-notifications-list]");
  if (!list) return;
  list.prepend(notificationItem(event.detail));
  while (list.children.length > 5) list.lastElementChild.remove();
  const empty = gridElement.querySelector("[data-notifications-empty]");
  if (empty) empty.hidden = true;
});

function setupQuickSubmit(form) {
  const key = form.querySelector('[name="idempotency_key"]');
  key.value = newKey();
  const result = form.querySelector("[data-result]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const command = String(data.get("command") || "").trim();
    if (!command) return;
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const body = {
        script: `#!/bin/bash\n${command}\n`,
        partition: String(data.get("partition") || "") || null,
        time_limit: String(data.get("time_limit") || "").trim() || null,
        name: command.split(/\s+/)[0].split("/").pop().slice(0, 60) || "job",
      };
      const answer = await api("/api/v1/jobs", {
        method: "POST",
        json: body,
        headers: { "Idempotency-Key": key.value },
      });
      result.replaceChildren();
      const message = answer.replayed ? "submit.replayed" : "submit.submitted";
      const link = el("a", "", t(message, { id: answer.job_id }));
      link.href = `/jobs/${answer.job_id}`;
      result.append(link);
      result.classList.remove("error");
      key.value = newKey();
    } catch (error) {
      showResult(result, error.message, true);
    } finally {
      button.disabled = false;
    }
  });
}

function setupWidget(item) {
  if (item.dataset.widget === "notifications") fillNotifications(item);
  const form = item.querySelector("[data-quick-submit]");
  if (form) setupQuickSubmit(form);
}

// --- Start ---------------------------------------------------------------------------------------

if (gridElement && GridStack) {
  // Resizing near the window's bottom edge scrolled the page, and the scroll grew the
  // widget, which scrolled the page again: a 150 px drag became 1,440 px. A widget now
  // follows the pointer only (the wheel still scrolls) and stops at MAX_WIDGET_ROWS.
  if (GridStack.Utils?.updateScrollResize) GridStack.Utils.updateScrollResize = () => {};
  grid = GridStack.init(
    {
      column: COLUMNS,
      cellHeight: 80,
      margin: 6,
      float: false,
      staticGrid: true,
      handle: ".widget-handle",
      animate: true,
      columnOpts: { breakpoints: [{ w: 720, c: 1 }] },
    },
    gridElement,
  );
  document.documentElement.classList.add("gs-ready");
  grid.on("change", () => {
    if (editing) scheduleSave();
  });
  for (const item of gridElement.querySelectorAll(".grid-stack-item")) wire(item);
  syncAddOptions();
  editButton.addEventListener("click", () => setEditing(!editing));
  doneButton.addEventListener("click", () => {
    setEditing(false);
    editButton.focus();
  });
  addSelect.addEventListener("change", () => addWidget(addSelect.value));
  resetButton.addEventListener("click", reset);
} else if (gridElement) {
  // No grid library: the widgets still show, in a plain responsive grid.
  for (const item of gridElement.querySelectorAll(".grid-stack-item")) setupWidget(item);
  if (editButton) editButton.hidden = true;
}
