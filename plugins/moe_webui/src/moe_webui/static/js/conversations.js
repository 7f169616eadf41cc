// Conversations live in the browser (localStorage), never on the gateway: the gateway stays
// stateless, and a user's history stays on the user's machine. Generated pictures and speech are
// large, so when the browser's quota is reached they are dropped from the stored copy (the text,
// the routing details and the feedback are kept).

const STORE = "moe.conversations";
const SETTINGS = "moe.settings";

/**
 * @typedef {{role: "user"|"assistant", content: string, images?: string[], media?: object,
 *            meta?: object, usage?: object, error?: object, stopped?: boolean,
 *            feedback?: number|null, model?: string, at: number}} Message
 * @typedef {{id: string, title: string, model: string, created: number, updated: number,
 *            messages: Message[]}} Conversation
 */

/** Every stored conversation, most recently updated first. */
export function loadConversations() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORE) || "[]");
    return Array.isArray(stored) ? stored.sort((a, b) => b.updated - a.updated) : [];
  } catch {
    return []; // A corrupt entry must not leave the user with a blank page.
  }
}

/** A new, empty conversation (not stored until it has a message). */
export function newConversation(model) {
  const now = Date.now();
  return { id: crypto.randomUUID(), title: "New chat", model, created: now, updated: now, messages: [] };
}

/**
 * Store `conversation` (replacing its earlier version) beside the others.
 * @returns {{trimmed: boolean}} trimmed: media had to be left out to fit the quota.
 */
export function saveConversation(conversation) {
  const others = loadConversations().filter((c) => c.id !== conversation.id);
  const all = [conversation, ...others];
  try {
    localStorage.setItem(STORE, JSON.stringify(all));
    return { trimmed: false };
  } catch {
    localStorage.setItem(STORE, JSON.stringify(all.map(withoutMedia)));
    return { trimmed: true };
  }
}

/** Remove a conversation for good. */
export function deleteConversation(id) {
  const kept = loadConversations().filter((c) => c.id !== id);
  localStorage.setItem(STORE, JSON.stringify(kept));
}

function withoutMedia(conversation) {
  return {
    ...conversation,
    messages: conversation.messages.map((message) => {
      const { images, media, ...rest } = message;
      const dropped = (images?.length || 0) + (media?.images?.length || 0) + (media?.audio?.length || 0);
      return dropped ? { ...rest, mediaDropped: dropped } : rest;
    }),
  };
}

/** The chat settings the user last chose (model, system prompt, temperature, max tokens). */
export function loadSettings() {
  try {
    return JSON.parse(localStorage.getItem(SETTINGS) || "{}") || {};
  } catch {
    return {};
  }
}

export function saveSettings(settings) {
  localStorage.setItem(SETTINGS, JSON.stringify(settings));
}
