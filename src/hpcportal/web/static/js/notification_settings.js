// The notification settings page: the bell's switches, your channels (add, confirm
// with the code, new code, test message, remove) and subscriptions, each form sent to
// the API with the CSRF header; after a change the page reloads to draw the new state.

import { api, showResult, t } from "./core.js";

const text = JSON.parse(document.getElementById("delivery-text")?.textContent || "{}");

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

// Run ``work``; reload on success unless it returns false, else show why in ``out``.
async function act(out, button, work) {
  if (button) button.disabled = true;
  try {
    const reload = await work();
    if (reload !== false) window.location.reload();
  } catch (error) {
    showResult(out, error.message, true);
  } finally {
    if (button) button.disabled = false;
  }
}

const channelForm = document.getElementById("channel-form");
const channelResult = document.getElementById("channel-result");
channelForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(channelForm);
  const body = {
    kind: data.get("kind"),
    name: String(data.get("name") || "").trim(),
    target: String(data.get("target") || "").trim(),
    language: data.get("language"),
  };
  const rate = String(data.get("rate_limit_per_hour") || "").trim();
  if (rate) body.rate_limit_per_hour = Number(rate);
  act(channelResult, channelForm.querySelector('button[type="submit"]'), async () => {
    const created = await api("/api/v1/notifications/channels", { method: "POST", json: body });
    if (created.secret) {
      showResult(channelResult, `${text.secret} ${created.secret}`);
      return false; // keep the secret on screen; the list shows the channel next visit
    }
    return true;
  });
});

const channelsResult = document.getElementById("channels-result");
for (const verifyForm of document.querySelectorAll("form[data-verify-channel]")) {
  verifyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = verifyForm.dataset.verifyChannel;
    const code = String(new FormData(verifyForm).get("code") || "").trim();
    act(channelsResult, verifyForm.querySelector('button[type="submit"]'), () =>
      api(`/api/v1/notifications/channels/${id}/verify`, { method: "POST", json: { code } }),
    );
  });
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const { resendCode, testChannel, removeChannel, removeSubscription } = button.dataset;
  if (resendCode) {
    act(channelsResult, button, async () => {
      await api(`/api/v1/notifications/channels/${resendCode}/code`, { method: "POST" });
      showResult(channelsResult, text.code_sent);
      return false;
    });
  } else if (testChannel) {
    act(channelsResult, button, async () => {
      await api(`/api/v1/notifications/channels/${testChannel}/test`, { method: "POST" });
      showResult(channelsResult, text.test_sent);
      return false;
    });
  } else if (removeChannel) {
    if (!window.confirm(text.confirm_remove)) return;
    act(channelsResult, button, () =>
      api(`/api/v1/notifications/channels/${removeChannel}`, { method: "DELETE" }),
    );
  } else if (removeSubscription) {
    act(document.getElementById("subscriptions-result"), button, () =>
      api(`/api/v1/notifications/subscriptions/${removeSubscription}`, { method: "DELETE" }),
    );
  }
});

const zoneInput = document.getElementById("sub-zone");
if (zoneInput && zoneInput.value === "UTC") {
  zoneInput.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

const subForm = document.getElementById("subscription-form");
const subResult = document.getElementById("subscription-result");
subForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(subForm);
  const body = {
    event: data.get("event"),
    channel_id: Number(data.get("channel_id")),
    mode: data.get("mode"),
    time_zone: String(data.get("time_zone") || "UTC").trim(),
  };
  const start = String(data.get("quiet_start") || "");
  const end = String(data.get("quiet_end") || "");
  if (start || end) {
    body.quiet_start = start;
    body.quiet_end = end;
  }
  act(subResult, subForm.querySelector('button[type="submit"]'), () =>
    api("/api/v1/notifications/subscriptions", { method: "POST", json: body }),
  );
});
