// The notification settings page: save every switch through the API at once (a box
// left unticked is "off"), then say it is saved, or why not.

import { api, showResult, t } from "./core.js";

const form = document.getElementById("notification-settings");
const result = document.getElementById("settings-result");

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type="submit"]');
  const switches = {};
  for (const box of form.querySelectorAll('input[type="checkbox"][name="event"]')) {
    switches[box.value] = box.checked;
  }
  button.disabled = true;
  try {
    await api("/api/v1/notifications/settings", { method: "PUT", json: switches });
    showResult(result, t("settings.saved"));
  } catch (error) {
    showResult(result, error.message, true);
  } finally {
    button.disabled = false;
  }
});
