// The file manager's folder tree: the current file area's folders, each one opened on
// demand (one listing request, folders only), with the way down to the current folder
// opened on load. Folder names only reach the page as text.

import { api } from "./core.js";

const tree = document.getElementById("file-tree");
const PAGE = 500;

function segments(path) {
  return path ? "/" + path.split("/").map(encodeURIComponent).join("/") : "";
}

function pageUrl(root, path) {
  const hidden = tree.dataset.hidden === "1" ? "?hidden=1" : "";
  return `/files/${encodeURIComponent(root)}${segments(path)}${hidden}`;
}

function fileUrl(root, path, query) {
  return `/api/v1/files/${encodeURIComponent(root)}${segments(path)}?${query}`;
}

async function subfolders(root, path) {
  const query = new URLSearchParams({ limit: String(PAGE), sort: "name" });
  if (tree.dataset.hidden === "1") query.set("hidden", "1");
  const listing = await api(fileUrl(root, path, query.toString()), { quiet401: true });
  return { folders: listing.entries.filter((e) => e.type === "directory"), more: listing.total > PAGE };
}

function item(root, path, name) {
  const li = document.createElement("li");
  li.dataset.path = path;
  const row = document.createElement("div");
  row.className = "tree-row";
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "tree-toggle";
  toggle.setAttribute("aria-expanded", "false");
  toggle.setAttribute("aria-label", `${tree.dataset.expandLabel}: ${name}`);
  toggle.textContent = "▸";
  toggle.addEventListener("click", () => setOpen(li, toggle.getAttribute("aria-expanded") !== "true"));
  const link = document.createElement("a");
  link.href = pageUrl(root, path);
  link.textContent = name;
  link.setAttribute("translate", "no");
  if (path === tree.dataset.folder) link.setAttribute("aria-current", "location");
  row.append(toggle, link);
  li.append(row);
  return li;
}

async function setOpen(li, open) {
  const toggle = li.querySelector(":scope > .tree-row > .tree-toggle");
  toggle.setAttribute("aria-expanded", String(open));
  toggle.textContent = open ? "▾" : "▸";
  let list = li.querySelector(":scope > ul");
  if (!open) {
    if (list) list.hidden = true;
    return;
  }
  if (list) {
    list.hidden = false;
    return;
  }
  list = document.createElement("ul");
  li.append(list);
  const root = tree.dataset.root;
  try {
    const { folders, more } = await subfolders(root, li.dataset.path);
    for (const f of folders) list.append(item(root, f.path, f.name));
    if (!folders.length || more) {
      const note = document.createElement("li");
      note.className = "muted";
      note.textContent = folders.length ? tree.dataset.moreLabel : tree.dataset.emptyLabel;
      list.append(note);
    }
  } catch (error) {
    const note = document.createElement("li");
    note.className = "muted";
    note.textContent = error.message;
    list.append(note);
  }
}

async function openTowards(current) {
  const root = tree.dataset.root;
  const top = item(root, "", root);
  tree.append(top);
  await setOpen(top, true);
  let node = top;
  const parts = current ? current.split("/") : [];
  for (let i = 0; i < parts.length; i += 1) {
    const path = parts.slice(0, i + 1).join("/");
    const next = [...node.querySelectorAll(":scope > ul > li")].find((li) => li.dataset.path === path);
    if (!next) break;
    await setOpen(next, true);
    node = next;
  }
}

if (tree) openTowards(tree.dataset.folder || "");
