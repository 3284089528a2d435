// The VNC viewer (noVNC) for the session and share pages, loaded only when a desktop
// is ready. The WebSocket goes to the portal, which authenticates to the session's
// VNC server itself and offers noVNC only the security type "None": the page never
// holds a password, and no URL carries one.

import RFB from "/static/vendor/novnc/core/rfb.js";
import { t } from "./core.js";

const SETTINGS_KEY = "hpcportal_vnc";
const RETRY_MS = 2_000;
const MAX_RETRIES = 3;

function saved() {
  try {
    return JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

function save(settings) {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  } catch {
    // Settings are a convenience.
  }
}

const byId = (id) => document.getElementById(id);

export class Viewer {
  /**
   * path: the portal's WebSocket path; viewOnly: no input reaches the desktop;
   * stillWanted(): asked after an unexpected disconnect (reconnect if true).
   */
  constructor({ path, viewOnly = false, stillWanted = async () => true }) {
    this.path = path;
    this.viewOnly = viewOnly;
    this.stillWanted = stillWanted;
    this.screen = byId("vnc-screen");
    this.status = byId("vnc-status");
    this.rfb = null;
    this.retries = 0;
    this.stopped = false;
    this.settings = { scale: "scale", quality: 6, compression: 2, ...saved() };
    this.wire();
    this.connect();
  }

  setStatus(key, state) {
    if (!this.status) return;
    this.status.textContent = key ? t(key) : "";
    this.status.dataset.status = state;
  }

  connect() {
    this.stopped = false;
    this.drop();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const rfb = new RFB(this.screen, `${scheme}//${location.host}${this.path}`, {
      shared: true,
      wsProtocols: ["binary"],
    });
    rfb.viewOnly = this.viewOnly;
    rfb.focusOnClick = !this.viewOnly;
    rfb.background = "rgb(40, 40, 40)";
    this.rfb = rfb;
    this.apply();
    this.setStatus("vnc.connecting", "connecting");
    rfb.addEventListener("connect", () => {
      if (this.rfb !== rfb) return;
      this.retries = 0;
      this.setStatus("vnc.connected", "connected");
    });
    // A disconnect this page did not ask for (noVNC calls the server's closing
    // "clean" too): ask whether the session is still there, then reconnect.
    rfb.addEventListener("disconnect", () => {
      if (this.rfb !== rfb) return;
      this.rfb = null;
      this.setStatus("vnc.disconnected", "disconnected");
      if (!this.stopped) this.retry();
    });
    // The portal never asks the browser for a password; if anything does, refuse.
    rfb.addEventListener("credentialsrequired", () => {
      this.stopped = true;
      rfb.disconnect();
      this.setStatus("vnc.refused", "refused");
    });
    rfb.addEventListener("securityfailure", () => {
      this.stopped = true;
      this.setStatus("vnc.refused", "refused");
    });
    rfb.addEventListener("clipboard", (event) => {
      const box = byId("vnc-clipboard");
      if (!box) return;
      box.value = event.detail.text;
      this.setStatus("vnc.clipboard_received", "connected");
    });
  }

  async retry() {
    if (this.retries >= MAX_RETRIES) return;
    this.retries += 1;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS * this.retries));
    if (this.stopped || this.rfb) return;
    let wanted = false;
    try {
      wanted = await this.stillWanted();
    } catch {
      wanted = false;
    }
    if (wanted && !this.stopped && !this.rfb) this.connect();
  }

  /** Close the connection (if any) without reconnecting. */
  drop() {
    const rfb = this.rfb;
    this.rfb = null;
    if (rfb) rfb.disconnect();
  }

  stop() {
    this.stopped = true;
    this.drop();
    this.setStatus("vnc.disconnected", "disconnected");
  }

  apply() {
    const rfb = this.rfb;
    if (!rfb) return;
    const mode = this.settings.scale;
    rfb.scaleViewport = mode === "scale";
    rfb.resizeSession = mode === "remote";
    rfb.clipViewport = false;
    rfb.qualityLevel = Number(this.settings.quality);
    rfb.compressionLevel = Number(this.settings.compression);
  }

  /** The page's controls (those it has): fit, quality, compression, full screen... */
  wire() {
    const scale = byId("vnc-scale");
    if (scale) {
      scale.value = this.settings.scale;
      scale.addEventListener("change", () => this.change({ scale: scale.value }));
    }
    for (const name of ["quality", "compression"]) {
      const input = byId(`vnc-${name}`);
      const shown = byId(`vnc-${name}-value`);
      if (!input) continue;
      input.value = String(this.settings[name]);
      if (shown) shown.textContent = input.value;
      input.addEventListener("input", () => {
        if (shown) shown.textContent = input.value;
      });
      input.addEventListener("change", () => this.change({ [name]: Number(input.value) }));
    }
    byId("vnc-reconnect")?.addEventListener("click", () => {
      this.retries = 0;
      this.connect();
    });
    byId("vnc-fullscreen")?.addEventListener("click", () => {
      if (!this.screen.requestFullscreen) {
        this.setStatus("vnc.no_fullscreen", this.status?.dataset.status || "");
        return;
      }
      this.screen.requestFullscreen().then(
        () => this.rfb?.focus(),
        () => this.setStatus("vnc.no_fullscreen", this.status?.dataset.status || ""),
      );
    });
    byId("vnc-clipboard-send")?.addEventListener("click", () => {
      const text = byId("vnc-clipboard")?.value || "";
      if (!this.rfb) return;
      this.rfb.clipboardPasteFrom(text);
      this.setStatus("vnc.clipboard_sent", "connected");
    });
  }

  change(settings) {
    this.settings = { ...this.settings, ...settings };
    save(this.settings);
    this.apply();
  }
}
