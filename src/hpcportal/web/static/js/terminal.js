// The terminal page: xterm.js attached to the person's login shell over a WebSocket.
//
// The shell is started (or found again) through the terminal API; its id is kept in
// this tab's sessionStorage, so a reload or a lost connection reattaches to the same
// shell while the portal keeps it, and otherwise a new one starts. Keystrokes go out
// as binary messages, sizes as {"type": "resize"} text; the server's text messages
// say when the shell is attached and why it ended.

import { Terminal } from "/static/vendor/xterm/xterm.mjs";
import { FitAddon } from "/static/vendor/xterm/addon-fit.mjs";
import { api } from "./core.js";

const STORE = "hpcportal.terminal";
const box = document.getElementById("terminal");
const statusLine = document.getElementById("terminal-status");
const where = document.getElementById("terminal-where");
const messages = JSON.parse(document.getElementById("terminal-messages").textContent);
const encoder = new TextEncoder();

const term = new Terminal({
  cursorBlink: true,
  scrollback: 5000,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Noto Sans Mono CJK KR", monospace',
  fontSize: 14,
});
const fit = new FitAddon();
term.loadAddon(fit);
term.open(box);
fit.fit();

let socket = null;
let ended = false;
let retries = 0;
let notice = "";

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function setState(state) {
  box.dataset.state = state;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Start a new shell (in `cwd`, or the home folder) and attach to it. */
async function openShell(cwd) {
  say(messages.connecting);
  setState("opening");
  try {
    const made = await api("/api/v1/terminal/sessions", {
      method: "POST",
      json: { cwd: cwd || null, rows: term.rows, cols: term.cols },
    });
    sessionStorage.setItem(STORE, made.id);
    attach(made.id);
  } catch (error) {
    setState("failed");
    say(error.message || messages.failed, true);
  }
}

function attach(id) {
  ended = false;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/api/v1/terminal/sessions/${encodeURIComponent(id)}/ws`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  socket = ws;
  ws.onmessage = (event) => {
    if (typeof event.data === "string") {
      control(JSON.parse(event.data));
    } else {
      term.write(new Uint8Array(event.data));
    }
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (!ended) reconnect(id);
  };
}

function control(message) {
  if (message.type === "attached") {
    term.reset(); // the backlog that follows redraws what the shell printed
    retries = 0;
    box.dataset.terminalId = message.id;
    where.textContent = message.cwd;
    say(notice || messages.connected);
    notice = "";
    setState("attached");
    sendSize();
    term.focus();
  } else if (message.type === "closed" && message.reason !== "too_slow") {
    ended = true;
    if (!["expired", "logged_out"].includes(message.reason)) sessionStorage.removeItem(STORE);
    box.dataset.reason = message.reason;
    setState("closed");
    say(messages[message.reason] || messages.closed, message.reason !== "exit");
  }
}

/** The socket dropped: reattach if the portal still has the shell, else start anew. */
async function reconnect(id) {
  setState("reconnecting");
  say(messages.reconnecting);
  await sleep(Math.min(10000, 500 * 2 ** retries));
  retries += 1;
  let mine;
  try {
    mine = await api("/api/v1/terminal/sessions");
  } catch (error) {
    if (error.status === 0) return reconnect(id); // still offline
    setState("failed");
    say(error.message, true);
    return undefined;
  }
  if (mine.some((t) => t.id === id)) {
    attach(id);
  } else {
    notice = messages.reopened;
    await openShell(null);
  }
  return undefined;
}

function send(data) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(data);
}

function sendSize() {
  send(JSON.stringify({ type: "resize", rows: term.rows, cols: term.cols }));
}

async function copySelection() {
  const text = term.getSelection();
  if (!text) {
    say(messages.nothing_selected);
    return;
  }
  try {
    await navigator.clipboard.writeText(text);
    say(messages.copied);
  } catch {
    say(messages.no_clipboard, true);
  }
}

async function pasteClipboard() {
  try {
    term.paste(await navigator.clipboard.readText());
  } catch {
    say(messages.no_clipboard, true);
  }
  term.focus();
}

term.onData((data) => send(encoder.encode(data)));
term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
term.onResize(sendSize);
// Ctrl+Shift+C copies; Ctrl+Shift+V is left to the browser, whose paste xterm.js reads.
term.attachCustomKeyEventHandler((event) => {
  if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
  if (event.code === "KeyC") {
    copySelection();
    return false;
  }
  return event.code !== "KeyV";
});
new ResizeObserver(() => fit.fit()).observe(box);

document.getElementById("terminal-copy").addEventListener("click", copySelection);
document.getElementById("terminal-paste").addEventListener("click", pasteClipboard);
document.getElementById("terminal-new").addEventListener("click", async () => {
  const old = sessionStorage.getItem(STORE);
  ended = true;
  if (socket) socket.close();
  socket = null;
  if (old) {
    try {
      await api(`/api/v1/terminal/sessions/${encodeURIComponent(old)}`, { method: "DELETE" });
    } catch {
      // Already gone.
    }
    sessionStorage.removeItem(STORE);
  }
  await openShell(null);
});

async function start() {
  const cwd = box.dataset.cwd;
  const stored = sessionStorage.getItem(STORE);
  if (cwd) {
    // "Open in terminal": a new shell there; a reload then reattaches to it.
    history.replaceState(null, "", location.pathname);
    await openShell(cwd);
  } else if (stored) {
    setState("reconnecting");
    retries = 0;
    const mine = await api("/api/v1/terminal/sessions").catch(() => []);
    if (mine.some((t) => t.id === stored)) attach(stored);
    else await openShell(null);
  } else {
    await openShell(null);
  }
}

start();
