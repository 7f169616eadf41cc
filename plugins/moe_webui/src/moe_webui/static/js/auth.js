// API keys, kept in sessionStorage: they last as long as the tab and never reach localStorage,
// where conversations live. A gateway with admin keys refuses breaker resets to ordinary keys
// (403); the page then asks for an admin key, kept apart, and uses it for admin actions only.

import { byId } from "./dom.js";

const API_KEY = "moe.apiKey";
const ADMIN_KEY = "moe.adminKey";

/** The API key this tab uses, if one was given. */
export function apiKey() {
  return sessionStorage.getItem(API_KEY);
}

/** The admin key for admin actions; falls back to the API key (which may be an admin key). */
export function adminKey() {
  return sessionStorage.getItem(ADMIN_KEY) || apiKey();
}

/** Forget both keys (the "Sign out" button). */
export function forgetKeys() {
  sessionStorage.removeItem(API_KEY);
  sessionStorage.removeItem(ADMIN_KEY);
  document.dispatchEvent(new CustomEvent("moe:keys"));
}

let pending = null;

/**
 * Ask the user for a key, in the page's dialog. Concurrent callers (a dashboard refresh firing
 * several requests that all got a 401) share one prompt.
 * @param {{admin?: boolean, reason?: string}} options `reason` is the gateway's own message.
 * @returns {Promise<string|null>} the key, or null if the user cancelled.
 */
export function askForKey({ admin = false, reason = "" } = {}) {
  if (pending) return pending;
  const dialog = byId("key-dialog");
  const input = byId("key-input");
  byId("key-title").textContent = admin ? "Admin key needed" : "API key needed";
  byId("key-reason").textContent = admin
    ? "This action changes the gateway for everyone, so it needs an admin key."
    : "This gateway asks for an API key. It is kept in this tab only (sessionStorage).";
  byId("key-error").textContent = reason;
  input.value = "";
  dialog.returnValue = ""; // Escape closes without touching it: it must not say "ok" from before
  pending = new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      pending = null;
      const key = dialog.returnValue === "ok" ? input.value.trim() : "";
      if (!key) return resolve(null);
      sessionStorage.setItem(admin ? ADMIN_KEY : API_KEY, key);
      document.dispatchEvent(new CustomEvent("moe:keys"));
      resolve(key);
    };
    dialog.addEventListener("close", done);
  });
  dialog.showModal();
  input.focus();
  return pending;
}
