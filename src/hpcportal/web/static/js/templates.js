// The template editor: name, category, script (highlighted), default options and a
// parameter editor; saved through POST/PUT /api/v1/templates, deleted with DELETE.

import { api, showResult, t } from "./core.js";
import { attachEditor } from "./editor.js";

const form = document.getElementById("template-form");
const template = JSON.parse(document.getElementById("template-data").textContent);
const rows = document.getElementById("param-rows");
const rowTemplate = document.getElementById("param-row-template");
const result = document.getElementById("template-result");
const editor = attachEditor(form.querySelector("[data-editor]"));

function addRow(param = {}) {
  const row = rowTemplate.content.firstElementChild.cloneNode(true);
  const set = (key, value) => {
    const input = row.querySelector(`[data-p="${key}"]`);
    if (!input || value === null || value === undefined) return;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = Array.isArray(value) ? value.join(", ") : String(value);
  };
  for (const key of ["name", "type", "label", "default", "required", "min", "max", "choices", "option", "help"]) {
    set(key, param[key]);
  }
  row.querySelector("[data-remove-param]").addEventListener("click", () => {
    row.remove();
    document.getElementById("param-add").focus();
  });
  rows.append(row);
  return row;
}

function typed(type, text) {
  if (text === "") return null;
  if (type === "integer") return Number.parseInt(text, 10);
  if (type === "number") return Number(text);
  if (type === "boolean") return ["true", "yes", "on", "1"].includes(text.toLowerCase());
  return text;
}

function parameters() {
  return [...rows.querySelectorAll("tr")].map((row) => {
    const get = (key) => row.querySelector(`[data-p="${key}"]`);
    const type = get("type").value;
    const number = (key) => (get(key).value === "" ? null : Number(get(key).value));
    const choices = get("choices").value.split(",").map((c) => c.trim()).filter(Boolean);
    return {
      name: get("name").value.trim(),
      type,
      label: get("label").value.trim(),
      help: get("help").value.trim(),
      default: typed(type, get("default").value.trim()),
      required: get("required").checked,
      min: type === "integer" || type === "number" ? number("min") : null,
      max: type === "integer" || type === "number" ? number("max") : null,
      choices: type === "choice" ? choices : null,
      option: get("option").value || null,
    };
  });
}

for (const param of template.parameters || []) addRow(param);
document.getElementById("param-add").addEventListener("click", () => {
  addRow({ type: "string" }).querySelector('[data-p="name"]').focus();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = new FormData(form);
  let options;
  try {
    options = JSON.parse(String(values.get("options") || "{}") || "{}");
    if (!options || typeof options !== "object" || Array.isArray(options)) throw new Error();
  } catch {
    showResult(result, t("templates.bad_options"), true);
    document.getElementById("t-options").focus();
    return;
  }
  const body = {
    name: String(values.get("name") || "").trim(),
    category: String(values.get("category") || "").trim(),
    description: String(values.get("description") || ""),
    script: editor.value,
    options,
    parameters: parameters(),
  };
  if (!template.id && values.get("scope")) body.scope = values.get("scope");
  try {
    const saved = template.id
      ? await api(`/api/v1/templates/${template.id}`, { method: "PUT", json: body })
      : await api("/api/v1/templates", { method: "POST", json: body });
    showResult(result, t("templates.saved"));
    setTimeout(() => location.assign(`/templates/${saved.id}`), 600);
  } catch (error) {
    showResult(result, error.message, true);
  }
});

const deleteButton = document.getElementById("template-delete");
if (deleteButton) {
  deleteButton.addEventListener("click", async () => {
    if (!window.confirm(t("templates.confirm_delete"))) return;
    try {
      await api(`/api/v1/templates/${template.id}`, { method: "DELETE" });
      showResult(result, t("templates.deleted"));
      location.assign("/templates");
    } catch (error) {
      showResult(result, error.message, true);
    }
  });
}
