// One message of a conversation, as the page shows it: a question with its pictures, or an answer
// with its Markdown, its media, how it was routed (experts, the gate's confidence and rationale,
// fallbacks, latency, cost) and the 👍/👎 that tell the gateway's trackers how it went.

import { h, formatMs, formatPercent, formatUsd, replace } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

// A thumb drawn as a path rather than an emoji: emoji fonts are missing on many servers' browsers.
const THUMB = "M7 10v11H3V10h4zm0 0l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 18.1 21H7";

function icon(path, flipped) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", flipped ? "icon flipped" : "icon");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "path");
  line.setAttribute("d", path);
  svg.append(line);
  return svg;
}

/** A question: its text and the pictures attached to it. */
export function renderQuestion(message) {
  return h(
    "article",
    { class: "message user" },
    h("div", { class: "body" }, message.content),
    message.images?.length
      ? h("div", { class: "attachments" }, message.images.map((src) => h("img", { src, alt: "attached image" })))
      : null,
    message.mediaDropped ? h("p", { class: "hint" }, "Attached images were not kept (browser storage full).") : null,
  );
}

/** An answer, re-rendered as it streams in and completed when it ends. */
export class AnswerView {
  /**
   * @param {object} message the stored answer (content, media, meta, usage, error...).
   * @param {{feedback: (message: object, score: number) => Promise<void>,
   *          retry: () => void}} actions retry: ask again, offered when the answer failed.
   */
  constructor(message, actions) {
    this.message = message;
    this.actions = actions;
    this.body = h("div", { class: "body markdown" });
    this.note = h("p", { class: "hint", role: "status" });
    this.media = h("div", { class: "media" });
    this.details = h("div", { class: "meta" });
    this.element = h(
      "article",
      { class: "message assistant", "aria-busy": "true" },
      this.note,
      this.body,
      this.media,
      this.details,
    );
    this.pending = false;
  }

  /** Show the text so far; renders at most once per frame however fast chunks arrive. */
  showText() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      renderMarkdown(this.body, this.message.content);
    });
  }

  /** A line about the answer while it is awaited (the gateway is loading...); "" hides it. */
  status(text) {
    this.note.textContent = text;
  }

  /** Show everything: the final text, media, routing details, error and feedback buttons. */
  finish() {
    renderMarkdown(this.body, this.message.content);
    this.element.setAttribute("aria-busy", "false");
    replace(this.media, renderMedia(this.message));
    replace(
      this.details,
      this.message.stopped ? h("p", { class: "hint stopped" }, "Stopped.") : null,
      this.message.finishReason === "length"
        ? h("p", { class: "hint cut" }, "Cut short: the answer reached its token limit (Settings, Max tokens).")
        : null,
      this.message.error ? renderError(this.message.error, this.actions.retry) : null,
      this.message.meta ? renderRouting(this.message.meta, this.message.usage) : null,
      this.message.meta?.request_id ? this.renderFeedback() : null,
    );
    return this;
  }

  renderFeedback() {
    const status = h("span", { class: "feedback-status", role: "status" });
    const votes = [
      [1, "Good answer", THUMB],
      [-1, "Bad answer", THUMB],
    ].map(([score, label, path]) => {
      const pressed = String(this.message.feedback === score);
      const button = h("button", { type: "button", class: "vote", "aria-label": label, title: label, "aria-pressed": pressed }, icon(path, score < 0));
      button.addEventListener("click", async () => {
        status.textContent = "Sending…";
        try {
          await this.actions.feedback(this.message, score);
          for (const vote of votes) vote.setAttribute("aria-pressed", String(vote === button));
          status.textContent = "Thanks: feedback recorded.";
        } catch (error) {
          status.textContent = `Feedback not recorded: ${error.message}`;
        }
      });
      return button;
    });
    return h("div", { class: "feedback" }, votes, status);
  }
}

/** Pictures and speech an expert returned (Pollinations' image and audio models do). */
export function renderMedia(message) {
  const media = message.media || {};
  return [
    (media.images || []).map((image) =>
      h(
        "figure",
        { class: "generated-image" },
        h("img", { src: `data:${image.format || "image/jpeg"};base64,${image.data}`, alt: image.description || "generated image" }),
        image.description ? h("figcaption", {}, image.description) : null,
      ),
    ),
    (media.audio || []).map((audio) =>
      h(
        "figure",
        { class: "generated-audio" },
        h("audio", { controls: true, src: `data:${audio.format || "audio/mpeg"};base64,${audio.data}` }),
        audio.transcript ? h("figcaption", {}, audio.transcript) : null,
      ),
    ),
    message.mediaDropped ? h("p", { class: "hint" }, "Generated media were not kept (browser storage full).") : null,
  ];
}

/** How the answer was produced, from `moe_metadata`. */
export function renderRouting(meta, usage) {
  const experts = meta.experts_used || [];
  const tokens = usage?.total_tokens;
  const line = h(
    "div",
    { class: "routing" },
    h("span", { class: "label" }, experts.length > 1 ? "Answered by experts" : "Answered by"),
    experts.map((name) => h("span", { class: "expert" }, name)),
    meta.confidence !== null && meta.confidence !== undefined
      ? h("span", { class: "confidence", title: "How sure the gate was of its choice" }, `confidence ${formatPercent(meta.confidence)}`)
      : null,
    h("span", { class: "gate", title: "The gate and the combiner that ran" }, `${meta.gate} · ${meta.strategy}`),
    h("span", { class: "latency", title: "Total latency" }, formatMs(meta.total_latency_ms)),
    h("span", { class: "cost", title: "Cost of the expert calls" }, formatUsd(meta.cost_usd ?? 0)),
    tokens ? h("span", { class: "tokens" }, `${tokens} tokens`) : null,
  );
  const fallbacks = meta.fallbacks || [];
  const note = fallbacks.length
    ? h(
        "div",
        { class: "fallback-note", role: "note" },
        h("strong", {}, "Fallback taken: "),
        fallbacks.map((f) => `${f.expert} failed (${f.error})`).join("; "),
        ` — answered by ${experts.join(", ") || "another expert"} instead.`,
      )
    : null;
  const facts = [
    ["Rationale", meta.rationale],
    ["Runner-up", meta.runner_up],
    ["Latency per expert", Object.entries(meta.latency_ms || {}).map(([e, ms]) => `${e}: ${formatMs(ms)}`).join(", ")],
    ["Notes", (meta.notes || []).join(" · ")],
    ["Tuned parameters", Object.keys(meta.overrides || {}).length ? JSON.stringify(meta.overrides) : ""],
    ["Tokens", usage ? `${usage.prompt_tokens} in, ${usage.completion_tokens} out` : ""],
    ["Request id", meta.request_id],
  ].filter(([, value]) => value);
  const why = h(
    "details",
    { class: "why" },
    h("summary", {}, "Why this expert"),
    h("dl", {}, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
  );
  return [line, note, why];
}

/** A failure the user can act on: what happened, and what to do about it. */
export function renderError(error, retry) {
  const hint =
    error.status === 429
      ? error.retryAfter
        ? `The gateway asks to wait ${error.retryAfter} s before the next request.`
        : "Wait a moment before the next request."
      : error.status >= 500
        ? "Pick another model, or choose auto to let the gate find one that works."
        : error.status === 0
          ? "Check that the gateway is running, then retry."
          : "";
  return h(
    "div",
    { class: "error-card", role: "alert" },
    h("strong", {}, error.title),
    h("p", {}, error.message),
    hint ? h("p", { class: "hint" }, hint) : null,
    retry ? h("button", { type: "button", class: "retry", onclick: retry }, "Retry") : null,
  );
}
