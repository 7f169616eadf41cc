// Every call to the gateway: the key it needs, the error envelope turned into an ApiError, and the
// chat stream read frame by frame. The page uses only the gateway's public routes, the same any
// client has, so what it shows is what a client gets.

import { adminKey, apiKey, askForKey } from "./auth.js";

/** A refusal or failure from the gateway, from its `{"error": {...}}` envelope. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: the gateway could not be reached).
   * @param {{message?: string, type?: string, code?: string, param?: string}} error
   * @param {number|null} retryAfter seconds, from `Retry-After`.
   */
  constructor(status, error = {}, retryAfter = null) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.type = error.type || null;
    this.param = error.param || null;
    this.retryAfter = retryAfter;
  }

  /** A heading that says what kind of problem this is, for people. */
  get title() {
    if (this.status === 0) return "The gateway cannot be reached";
    if (this.status === 401) return "API key refused";
    if (this.status === 403) return "Not allowed with this key";
    if (this.status === 429) {
      return this.retryAfter ? `Rate limited: try again in ${this.retryAfter} s` : "Rate limited";
    }
    if (this.code === "tracker_not_configured") return "Not configured on this gateway";
    if (this.status === 503) return "Expert unavailable";
    if (this.status === 504) return "Expert timed out";
    if (this.status >= 500) return "The expert failed";
    return "Request refused";
  }
}

/** Stopped by the user (the Stop button), not a failure. */
export function isAbort(error) {
  return error?.name === "AbortError";
}

async function errorOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not the gateway's envelope (a proxy's HTML page): the status still says what happened.
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(
    response.status,
    body.error || { message: response.statusText },
    Number.isFinite(retryAfter) ? retryAfter : null,
  );
}

/**
 * Fetch a gateway route with the key it needs; on a 401 (or, for admin actions, a 403) ask the
 * user for a key and try again, until the call succeeds or the user cancels.
 * @param {string} path
 * @param {{method?: string, body?: any, signal?: AbortSignal, admin?: boolean,
 *          headers?: Record<string,string>}} options
 * @returns {Promise<Response>} an ok response; anything else is thrown as an ApiError.
 */
export async function call(path, { method = "GET", body, signal, admin = false, headers = {} } = {}) {
  for (;;) {
    const key = admin ? adminKey() : apiKey();
    const sent = { ...headers };
    if (body !== undefined) sent["Content-Type"] = "application/json";
    if (key) sent.Authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new ApiError(0, { message: `${error.message}: is the gateway running?` });
    }
    if (response.ok) return response;
    const error = await errorOf(response);
    const needsKey = response.status === 401 || (admin && response.status === 403);
    if (!needsKey) throw error;
    const given = await askForKey({ admin, reason: key ? error.message : "" });
    if (!given) throw error;
  }
}

/** GET a JSON route. */
export async function getJSON(path, options = {}) {
  return (await call(path, options)).json();
}

/** POST JSON to a route and read its JSON answer. */
export async function postJSON(path, body, options = {}) {
  return (await call(path, { ...options, method: "POST", body })).json();
}

/**
 * Stream a chat completion: yields every chunk the gateway sends (`chat.completion.chunk`
 * objects; the last one before `[DONE]` carries `moe_metadata`). An error the gateway reports
 * after the stream started (an `error` frame) is thrown as an ApiError.
 * @param {object} body a `/v1/chat/completions` body (`stream` is set here).
 * @param {AbortSignal} signal aborts the request (the Stop button).
 */
export async function* streamChat(body, signal) {
  const response = await call("/v1/chat/completions", {
    method: "POST",
    body: { ...body, stream: true, stream_options: { include_usage: true } },
    signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    // Server-sent events end with a blank line; a frame may arrive in pieces.
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(502, chunk.error);
      yield chunk;
    }
  }
}
