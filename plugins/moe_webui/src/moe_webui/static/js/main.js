// The page's entry point: shows the chat or the dashboard (#chat, #dashboard), asks for a key
// when the gateway wants one, and says so plainly when the gateway cannot be used, rather than
// leaving a blank page.

import { ApiError } from "./api.js";
import { apiKey, askForKey, forgetKeys } from "./auth.js";
import { ChatView } from "./chat.js";
import { DashboardView, health } from "./dashboard.js";
import { byId } from "./dom.js";

const VIEWS = ["chat", "dashboard"];
const HEALTH_WHILE_LOADING_MS = 3000;

function current() {
  const name = location.hash.replace("#", "");
  return VIEWS.includes(name) ? name : "chat";
}

function showView(dashboard) {
  const name = current();
  document.body.dataset.view = name;
  for (const view of VIEWS) {
    byId(`view-${view}`).hidden = view !== name;
    byId(`tab-${view}`).setAttribute("aria-current", view === name ? "page" : "false");
  }
  dashboard.show(name === "dashboard");
}

function showKeyState() {
  byId("key-button").textContent = apiKey() ? "Forget key" : "API key…";
}

async function keyButton() {
  if (apiKey()) forgetKeys();
  else if (!(await askForKey())) return;
  location.reload();
}

async function showHealth() {
  const badge = byId("gateway-status");
  try {
    const state = await health();
    badge.textContent = state.status;
    badge.dataset.state = state.status;
    badge.title = Object.entries(state.experts || {})
      .map(([name, expert]) => `${name}: ${expert.state}`)
      .join("\n");
    // While models load, keep the badge current so the user sees when the gateway is ready.
    if (state.status === "loading") setTimeout(showHealth, HEALTH_WHILE_LOADING_MS);
  } catch {
    badge.textContent = "unreachable";
    badge.dataset.state = "unavailable";
  }
}

async function start() {
  const chat = new ChatView();
  const dashboard = new DashboardView();
  window.addEventListener("hashchange", () => showView(dashboard));
  document.addEventListener("moe:keys", showKeyState);
  byId("key-button").addEventListener("click", keyButton);
  showKeyState();
  showView(dashboard);
  showHealth();
  try {
    await chat.loadModels();
    byId("chat-notice").textContent = "";
  } catch (error) {
    const reason = error instanceof ApiError ? `${error.title}: ${error.message}` : String(error);
    byId("chat-notice").textContent = `The models could not be listed. ${reason}`;
  }
}

start();
