// The interactive apps page: each app's launch form posts to /api/v1/sessions (with
// the CSRF header, through api()) and then opens the new session's page.

import { api, showResult, t } from "./core.js";

for (const form of document.querySelectorAll("form.launch-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = form.querySelector(".form-result");
    const button = form.querySelector('button[type="submit"]');
    // The browser's own check first: numbers within their limits, in its words.
    if (!form.checkValidity()) {
      const bad = form.querySelector(":invalid");
      showResult(result, bad ? bad.validationMessage : t("error.generic"), true);
      bad?.focus();
      return;
    }
    const options = {};
    for (const field of form.querySelectorAll("input[name], select[name]")) {
      options[field.name] = field.dataset.type === "integer" ? Number(field.value) : field.value;
    }
    button.disabled = true;
    showResult(result, t("sessions.launching", { name: form.dataset.appName }));
    try {
      const session = await api("/api/v1/sessions", {
        method: "POST",
        json: { app_id: form.dataset.appId, options },
      });
      location.assign(session.view_url);
    } catch (error) {
      showResult(result, t("sessions.launch_failed", { message: error.message }), true);
      button.disabled = false;
    }
  });
}
