// The submit form: partition-aware limits, a template's generated parameter form,
// uploads, the Apptainer image, the script editor, a dry-run preview, and submission
// with one Idempotency-Key per form instance.

import { ApiError, api, el, formatDate, formatNumber, newKey, showResult, t, toast } from "./core.js";
import { attachEditor } from "./editor.js";

const data = JSON.parse(document.getElementById("submit-data").textContent);
const form = document.getElementById("submit-form");
const keyInput = document.getElementById("idempotency-key");
const result = document.getElementById("submit-result");
const partitionSelect = document.getElementById("f-partition");
const limitsHelp = document.getElementById("f-partition-help");
const templateSelect = document.getElementById("template-pick");
const templateDescription = document.getElementById("template-description");
const paramsBox = document.getElementById("template-params");
const paramFields = document.getElementById("template-param-fields");
const scriptNote = document.getElementById("script-template-note");
const filesInput = document.getElementById("f-files");
const uploadedList = document.getElementById("uploaded-files");
const preview = document.getElementById("preview");
const editor = attachEditor(document.querySelector("#script-section [data-editor]"));
const ownScript = { text: editor.value };
const uploads = [];
const partitions = new Map(data.partitions.map((p) => [p.name, p]));
const templates = new Map(data.templates.map((tpl) => [String(tpl.id), tpl]));

// --- Partition limits -------------------------------------------------------------------

/** Minutes in a Slurm time ("30", "1:00:00", "2-00", "1-12:00:00"); null if unparsable. */
export function minutesOf(text) {
  const value = String(text || "").trim();
  if (!value) return null;
  if (/^(UNLIMITED|INFINITE)$/i.test(value)) return Infinity;
  const match = /^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$/.exec(value);
  if (!match) return null;
  const [, days, a, b, c] = match;
  const d = Number(days || 0);
  if (days !== undefined) {
    // D-HH, D-HH:MM, D-HH:MM:SS
    return d * 1440 + Number(a) * 60 + Number(b || 0) + Number(c || 0) / 60;
  }
  if (b === undefined) return Number(a); // minutes
  if (c === undefined) return Number(a) + Number(b) / 60; // MM:SS
  return Number(a) * 60 + Number(b) + Number(c) / 60; // HH:MM:SS
}

function currentPartition() {
  return partitions.get(partitionSelect.value);
}

function showLimits() {
  const p = currentPartition();
  if (!p) return;
  const parts = [];
  if (p.max_time_text) parts.push(t("submit.limit_time", { limit: p.max_time_text }));
  const maxNodes = p.max_nodes ? Math.min(p.max_nodes, p.total_nodes) : p.total_nodes;
  if (maxNodes) parts.push(t("submit.limit_nodes", { limit: formatNumber(maxNodes) }));
  if (p.gpus_total) parts.push(t("submit.limit_gpus", { limit: formatNumber(p.gpus_total) }));
  limitsHelp.textContent = parts.join(" ");
  const time = document.getElementById("f-time");
  time.placeholder = p.default_time_text || "";
  document.getElementById("f-nodes").max = maxNodes || "";
  document.getElementById("f-gpus").max = String(p.gpus_total);
}

function checkLimits() {
  const p = currentPartition();
  const problems = [];
  const time = document.getElementById("f-time");
  const nodes = document.getElementById("f-nodes");
  const gpus = document.getElementById("f-gpus");
  for (const input of [time, nodes, gpus]) input.setCustomValidity("");
  if (!p) return problems;
  const minutes = minutesOf(time.value);
  if (time.value && p.max_time_minutes && minutes !== null && minutes > p.max_time_minutes) {
    problems.push([time, t("submit.limit_time", { limit: p.max_time_text })]);
  }
  const maxNodes = p.max_nodes ? Math.min(p.max_nodes, p.total_nodes) : p.total_nodes;
  if (nodes.value && maxNodes && Number(nodes.value) > maxNodes) {
    problems.push([nodes, t("submit.limit_nodes", { limit: maxNodes })]);
  }
  if (gpus.value && Number(gpus.value) > p.gpus_total) {
    problems.push([gpus, t("submit.limit_gpus", { limit: p.gpus_total })]);
  }
  for (const [input, message] of problems) input.setCustomValidity(message);
  return problems;
}

partitionSelect.addEventListener("change", () => {
  showLimits();
  checkLimits();
});
showLimits();

// --- Templates and their parameter forms ----------------------------------------------

function selectedTemplate() {
  return templates.get(templateSelect.value) || null;
}

function paramInput(param, index) {
  const id = `param-${index}-${param.name}`;
  const field = el("div", "field");
  const label = el("label", "", param.label || param.name);
  label.htmlFor = id;
  if (param.required) label.append(el("span", "muted", ` (${t("submit.required")})`));
  let input;
  if (param.type === "choice") {
    input = document.createElement("select");
    for (const choice of param.choices || []) {
      const option = el("option", "", choice);
      option.value = choice;
      input.append(option);
    }
    if (param.default !== null && param.default !== undefined) input.value = String(param.default);
  } else if (param.type === "boolean") {
    field.className = "field checkbox";
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = param.default === true;
  } else if (param.type === "file") {
    input = document.createElement("input");
    input.type = "file";
    input.addEventListener("change", async () => {
      input.dataset.uploadId = "";
      if (!input.files.length) return;
      const stored = await upload([input.files[0]]);
      if (stored && stored[0]) input.dataset.uploadId = stored[0].id;
    });
  } else {
    input = document.createElement("input");
    if (param.type === "integer" || param.type === "number") {
      input.type = "number";
      input.step = param.type === "integer" ? "1" : "any";
      if (param.min !== null && param.min !== undefined) input.min = String(param.min);
      if (param.max !== null && param.max !== undefined) input.max = String(param.max);
    } else if (param.max_length) {
      input.maxLength = param.max_length;
    }
    if (param.default !== null && param.default !== undefined) input.value = String(param.default);
  }
  input.id = id;
  input.dataset.param = param.name;
  input.dataset.type = param.type;
  if (param.required && param.type !== "boolean") input.required = true;
  field.prepend(label);
  if (param.type === "boolean") field.prepend(input);
  else field.append(input);
  if (param.help) {
    const help = el("small", "muted", param.help);
    help.id = `${id}-help`;
    input.setAttribute("aria-describedby", help.id);
    field.append(help);
  }
  return field;
}

function showTemplate() {
  const tpl = selectedTemplate();
  paramFields.replaceChildren();
  for (const input of form.querySelectorAll("[name]")) {
    if (input.dataset.templatePlaceholder !== undefined) {
      input.placeholder = input.dataset.templatePlaceholder;
      delete input.dataset.templatePlaceholder;
    }
  }
  if (!tpl) {
    paramsBox.hidden = true;
    templateDescription.textContent = "";
    scriptNote.hidden = true;
    editor.setReadOnly(false);
    editor.value = ownScript.text;
    return;
  }
  if (!editor.textarea.readOnly) ownScript.text = editor.value;
  templateDescription.textContent = tpl.description || "";
  tpl.parameters.forEach((param, index) => paramFields.append(paramInput(param, index)));
  paramsBox.hidden = tpl.parameters.length === 0;
  scriptNote.hidden = false;
  editor.value = tpl.script;
  editor.setReadOnly(true);
  for (const [name, value] of Object.entries(tpl.options || {})) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input && "placeholder" in input && input.type !== "checkbox") {
      input.dataset.templatePlaceholder = input.placeholder || "";
      input.placeholder = String(value);
    }
  }
}

templateSelect.addEventListener("change", showTemplate);
if (templateSelect.value) showTemplate();

function parameterValues() {
  const values = {};
  for (const input of paramFields.querySelectorAll("[data-param]")) {
    const name = input.dataset.param;
    const type = input.dataset.type;
    if (type === "boolean") values[name] = input.checked;
    else if (type === "file") {
      if (input.dataset.uploadId) values[name] = input.dataset.uploadId;
    } else if (input.value !== "") {
      values[name] = type === "integer" || type === "number" ? Number(input.value) : input.value;
    }
  }
  return values;
}

// --- Account and QoS --------------------------------------------------------------------------
// Once an account is chosen, only the QoS its association allows can be picked; its
// default QoS is named on the "default" choice.
const accountSelect = document.getElementById("f-account");
const qosSelect = document.getElementById("f-qos");
const accountChoices = new Map((data.accounts || []).map((a) => [a.name, a]));

function syncQos() {
  if (!(accountSelect instanceof HTMLSelectElement) || !(qosSelect instanceof HTMLSelectElement)) return;
  const account = accountChoices.get(accountSelect.value);
  for (const option of qosSelect.options) {
    if (!option.value) {
      option.textContent = account?.default_qos
        ? t("submit.qos_default_named", { qos: account.default_qos })
        : t("submit.qos_default");
      continue;
    }
    option.disabled = Boolean(account) && !account.qos.includes(option.value);
  }
  if (qosSelect.selectedOptions[0]?.disabled) qosSelect.value = "";
}
accountSelect?.addEventListener("change", syncQos);
syncQos();

// --- Uploads ------------------------------------------------------------------------------------

async function upload(files) {
  const body = new FormData();
  for (const file of files) body.append("files", file);
  showResult(result, t("submit.uploading"));
  try {
    const stored = await api("/api/v1/uploads", { method: "POST", body });
    showResult(result, t("submit.uploaded", { names: stored.map((f) => f.name).join(", ") }));
    return stored;
  } catch (error) {
    showResult(result, error.message, true);
    return null;
  }
}

/** Put ``text`` on the clipboard (the textarea fallback covers a page without the
 * Clipboard API, e.g. plain HTTP on a host other than localhost). */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

/** A button showing ``$NAME`` that copies it: the variable the script must use. */
function variableChip(name) {
  const chip = el("button", "var-chip", `$${name}`);
  chip.type = "button";
  chip.translate = false;
  chip.dataset.testid = "upload-variable";
  chip.dataset.variable = name;
  chip.title = t("submit.copy_variable");
  chip.setAttribute("aria-label", t("submit.copy_variable_named", { name: `$${name}` }));
  chip.addEventListener("click", async () => {
    const copied = await copyText(`$${name}`);
    toast(copied ? t("submit.variable_copied", { name: `$${name}` }) : t("submit.copy_failed"), 2500);
  });
  return chip;
}

function showUploads() {
  // The names the server gives (services/sbatch_script.environment_names): in upload
  // order, FILE_<NAME> with _2, _3 for repeats; the first file is also $INPUT.
  const taken = new Set();
  const names = uploads.map((file) => fileVariable(file.name, taken));
  uploadedList.replaceChildren(
    ...uploads.map((file, index) => {
      const item = el("li", "uploaded-file");
      item.dataset.testid = "uploaded-file";
      const label = el("span", "", `${file.name} (${formatNumber(file.size)} B)`);
      label.translate = false;
      item.append(label, " ", variableChip(names[index]));
      if (index === 0) item.append(" ", variableChip("INPUT"));
      const remove = el("button", "icon-button", "✕");
      remove.type = "button";
      remove.setAttribute("aria-label", `${t("common.remove")}: ${file.name}`);
      remove.addEventListener("click", () => {
        uploads.splice(index, 1);
        showUploads();
        filesInput.focus();
      });
      item.append(" ", remove);
      return item;
    }),
  );
}

filesInput.addEventListener("change", async () => {
  if (!filesInput.files.length) return;
  const stored = await upload([...filesInput.files]);
  if (stored) uploads.push(...stored);
  filesInput.value = "";
  showUploads();
});

// --- Files picked from the user's folders ----------------------------------------------------

const picked = [];
const pickedList = document.getElementById("picked-files");
const picker = document.getElementById("file-picker");
const pickerList = document.getElementById("picker-list");
const pickerState = { roots: [], root: null, path: "" };

function apiPath(root, path) {
  const tail = path ? "/" + path.split("/").map(encodeURIComponent).join("/") : "";
  return `/api/v1/files/${encodeURIComponent(root.name)}${tail}`;
}

/** ``FILE_<NAME>`` for a file name, as the server names uploaded inputs. */
export function fileVariable(fileName, taken) {
  const stem = fileName.slice(1).includes(".") ? fileName.slice(0, fileName.lastIndexOf(".")) : fileName;
  const cleaned = stem.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "").toUpperCase();
  const base = `FILE_${cleaned || "INPUT"}`;
  let name = base;
  for (let n = 2; taken.has(name); n += 1) name = `${base}_${n}`;
  taken.add(name);
  return name;
}

/** The environment variables of the picked files (names the form does not set itself). */
export function pickedEnvironment(files, environment = {}, uploaded = []) {
  const taken = new Set(Object.keys(environment));
  for (const file of uploaded) fileVariable(file.name, taken);
  const variables = {};
  for (const file of files) variables[fileVariable(file.name, taken)] = file.path;
  return variables;
}

function showPicked() {
  const variables = Object.entries(pickedEnvironment(picked, currentEnvironment(), uploads));
  pickedList.replaceChildren(
    ...picked.map((file, index) => {
      const item = el("li", "picked-file");
      item.dataset.path = file.path;
      const name = el("code", "", `${variables[index][0]}=${file.path}`);
      name.translate = false;
      const remove = el("button", "icon-button", "✕");
      remove.type = "button";
      remove.setAttribute("aria-label", `${t("common.remove")}: ${file.name}`);
      remove.addEventListener("click", () => {
        picked.splice(index, 1);
        showPicked();
        document.getElementById("pick-files").focus();
      });
      item.append(name, " ", remove);
      return item;
    }),
  );
}

async function browse(root, path) {
  pickerState.root = root;
  pickerState.path = path;
  const where = document.getElementById("picker-where");
  where.textContent = path ? `${root.path}/${path}` : root.path;
  const message = document.getElementById("picker-result");
  showResult(message, "");
  let listing;
  try {
    listing = await api(`${apiPath(root, path)}?limit=500`);
  } catch (error) {
    showResult(message, error.message, true);
    return;
  }
  const items = [];
  if (path) {
    const up = el("button", "button small", t("picker.up"));
    up.type = "button";
    up.addEventListener("click", () => browse(root, path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ""));
    const item = el("li");
    item.append(up);
    items.push(item);
  }
  for (const entry of listing.entries || []) {
    const item = el("li", "picker-entry");
    const button = el("button", "link-button", `${entry.type === "directory" ? "📁" : "📄"} ${entry.name}`);
    button.type = "button";
    button.translate = false;
    button.dataset.name = entry.name;
    if (entry.type === "directory") {
      button.addEventListener("click", () => browse(root, entry.path));
    } else {
      const full = `${root.path}/${entry.path}`;
      button.setAttribute("aria-label", t("picker.add", { name: entry.name }));
      button.dataset.testid = "picker-file";
      button.addEventListener("click", () => {
        if (!picked.some((f) => f.path === full)) picked.push({ name: entry.name, path: full });
        showPicked();
        showResult(message, t("picker.added", { name: entry.name }));
      });
    }
    item.append(button);
    items.push(item);
  }
  if (!(listing.entries || []).length) items.push(el("li", "muted", t("picker.empty")));
  pickerList.replaceChildren(...items);
}

async function openPicker() {
  picker.showModal();
  if (!pickerState.roots.length) {
    try {
      pickerState.roots = (await api("/api/v1/files")).filter((r) => r.accessible);
    } catch (error) {
      showResult(document.getElementById("picker-result"), error.message, true);
      return;
    }
    document.getElementById("picker-roots").replaceChildren(
      ...pickerState.roots.map((root) => {
        const button = el("button", "button small", root.name);
        button.type = "button";
        button.addEventListener("click", () => browse(root, ""));
        return button;
      }),
    );
  }
  if (pickerState.root) browse(pickerState.root, pickerState.path);
  else if (pickerState.roots.length) browse(pickerState.roots[0], "");
  else pickerList.replaceChildren(el("li", "muted", t("picker.no_roots")));
}

document.getElementById("pick-files").addEventListener("click", openPicker);
document.getElementById("picker-close").addEventListener("click", () => picker.close());

// --- Building the request ---------------------------------------------------------------------

function currentEnvironment() {
  const environment = {};
  for (const line of String(new FormData(form).get("environment") || "").split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) environment[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return environment;
}

const TEXT_FIELDS = [
  "name", "partition", "account", "qos", "memory", "time_limit", "array", "dependency",
  "work_dir", "output", "error", "mail_user", "apptainer_image",
];
const NUMBER_FIELDS = ["nodes", "ntasks", "cpus_per_task", "gpus"];

function options() {
  const values = new FormData(form);
  const body = {};
  for (const name of TEXT_FIELDS) {
    const value = String(values.get(name) || "").trim();
    if (value) body[name] = value;
  }
  for (const name of NUMBER_FIELDS) {
    const value = String(values.get(name) || "").trim();
    if (value) body[name] = Number(value);
  }
  const mail = values.getAll("mail_type").map(String);
  if (mail.length) body.mail_type = mail;
  const environment = currentEnvironment();
  Object.assign(environment, pickedEnvironment(picked, environment, uploads));
  if (Object.keys(environment).length) body.environment = environment;
  if (uploads.length) body.input_files = uploads.map((f) => f.id);
  return body;
}

async function send(dryRun) {
  const problems = checkLimits();
  if (problems.length) {
    problems[0][0].reportValidity();
    throw new ApiError(422, problems.map((p) => p[1]).join(" "));
  }
  const invalid = paramFields.querySelector(":invalid");
  if (invalid) {
    invalid.reportValidity();
    throw new ApiError(422, invalid.validationMessage);
  }
  const tpl = selectedTemplate();
  const query = dryRun ? "?dry_run=true" : "";
  const headers = dryRun ? {} : { "Idempotency-Key": keyInput.value };
  if (tpl) {
    return api(`/api/v1/templates/${tpl.id}/submit${query}`, {
      method: "POST",
      json: { parameters: parameterValues(), options: options() },
      headers,
    });
  }
  return api(`/api/v1/jobs${query}`, {
    method: "POST",
    json: { script: editor.value, ...options() },
    headers,
  });
}

function showPreview(answer) {
  preview.hidden = false;
  const verdict = document.getElementById("preview-verdict");
  const lines = [];
  if (answer.verdict) {
    lines.push(
      answer.verdict.accepted
        ? t("submit.preview_ok")
        : t("submit.preview_refused", { message: answer.verdict.message }),
    );
    if (answer.verdict.start_estimate) {
      lines.push(t("submit.estimate", { time: formatDate(answer.verdict.start_estimate, true) }));
    }
  }
  verdict.textContent = lines.join(" ");
  verdict.classList.toggle("error", Boolean(answer.verdict && !answer.verdict.accepted));
  document.getElementById("preview-conflicts").replaceChildren(
    ...(answer.conflicts || []).map((c) =>
      el(
        "li",
        "notice info",
        t("submit.conflict", { line: c.line, script: c.script_value, form: c.form_value }),
      ),
    ),
  );
  document
    .getElementById("preview-argv")
    .replaceChildren(...(answer.argv || []).map((arg) => el("li", "", arg)));
  document.getElementById("preview-script").textContent = answer.script || "";
}

document.getElementById("preview-button").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  showResult(result, "");
  try {
    showPreview(await send(true));
    preview.scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    showResult(result, error.message, true);
  } finally {
    button.disabled = false;
  }
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("submit-button");
  button.disabled = true;
  try {
    const answer = await send(false);
    result.replaceChildren();
    result.classList.remove("error");
    const message = answer.replayed ? "submit.replayed" : "submit.submitted";
    const link = el("a", "", t(message, { id: answer.job_id }));
    link.href = `/jobs/${answer.job_id}`;
    link.dataset.testid = "submitted-job";
    result.append(link);
    keyInput.value = newKey(); // the next submission is a new one
  } catch (error) {
    showResult(result, error.message, true);
  } finally {
    button.disabled = false;
  }
});
