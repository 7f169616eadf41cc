// The chat: a model picked from /v1/models, answers streamed from /v1/chat/completions and kept
// with their routing details in localStorage, feedback posted to /v1/feedback.

import { call, isAbort, postJSON, streamChat } from "./api.js";
import { byId, h, replace } from "./dom.js";
import { AnswerView, renderQuestion } from "./message.js";
import {
  deleteConversation,
  loadConversations,
  loadSettings,
  newConversation,
  saveConversation,
  saveSettings,
} from "./conversations.js";

const TITLE_CHARS = 48;
const LOADING_ATTEMPTS = 60; // five minutes of a gateway loading its models, at its Retry-After

export class ChatView {
  constructor() {
    this.form = byId("composer");
    this.prompt = byId("prompt");
    this.model = byId("model");
    this.system = byId("system-prompt");
    this.temperature = byId("temperature");
    this.maxTokens = byId("max-tokens");
    this.speak = byId("speak");
    this.attach = byId("attach");
    this.attachments = byId("attachments");
    this.messages = byId("messages");
    this.list = byId("conversation-list");
    this.send = byId("send");
    this.stop = byId("stop");
    this.notice = byId("chat-notice");
    this.images = [];
    this.controller = null;
    this.settings = loadSettings();
    this.conversation = newConversation(this.settings.model || "auto");
    this.bind();
    this.restoreSettings();
    this.renderList();
    this.renderConversation();
  }

  bind() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.ask();
    });
    this.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.ask();
      }
    });
    this.stop.addEventListener("click", () => this.controller?.abort());
    byId("new-chat").addEventListener("click", () => this.open(newConversation(this.model.value)));
    this.attach.addEventListener("change", () => this.addImages([...this.attach.files]));
    for (const input of [this.model, this.system, this.temperature, this.maxTokens, this.speak]) {
      input.addEventListener("change", () => this.storeSettings());
    }
  }

  /** Fill the model selector: the gate's names first (auto, aliases), then every expert. */
  async loadModels() {
    const response = await call("/v1/models");
    const models = (await response.json()).data || [];
    // /v1/models names the gate's entries as owned by "moe", experts by their provider.
    const gate = models.filter((m) => m.owned_by === "moe");
    const experts = models.filter((m) => m.owned_by !== "moe");
    replace(
      this.model,
      h("optgroup", { label: "The gate chooses" }, gate.map((m) => h("option", { value: m.id }, m.id))),
      h("optgroup", { label: "Experts" }, experts.map((m) => h("option", { value: m.id }, `${m.id} (${m.owned_by})`))),
    );
    const wanted = this.conversation.model || this.settings.model;
    this.model.value = models.some((m) => m.id === wanted) ? wanted : gate[0]?.id || models[0]?.id || "";
    return models;
  }

  restoreSettings() {
    this.system.value = this.settings.system || "";
    this.temperature.value = this.settings.temperature ?? "";
    this.maxTokens.value = this.settings.maxTokens ?? "";
    this.speak.checked = Boolean(this.settings.speak);
  }

  storeSettings() {
    this.settings = {
      model: this.model.value,
      system: this.system.value,
      temperature: this.temperature.value,
      maxTokens: this.maxTokens.value,
      speak: this.speak.checked,
    };
    this.conversation.model = this.model.value;
    saveSettings(this.settings);
  }

  async addImages(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/")) continue;
      this.images.push(await readAsDataURL(file));
    }
    this.attach.value = "";
    this.renderAttachments();
  }

  renderAttachments() {
    replace(
      this.attachments,
      this.images.map((src, index) =>
        h(
          "span",
          { class: "attachment" },
          h("img", { src, alt: `attachment ${index + 1}` }),
          h("button", { type: "button", "aria-label": "Remove image", onclick: () => this.removeImage(index) }, "×"),
        ),
      ),
    );
  }

  removeImage(index) {
    this.images.splice(index, 1);
    this.renderAttachments();
  }

  /** The request body: the system prompt, the conversation so far, the sampling settings. */
  requestBody() {
    const messages = [];
    if (this.system.value.trim()) messages.push({ role: "system", content: this.system.value.trim() });
    for (const message of this.conversation.messages) {
      if (message.role === "user") {
        messages.push({
          role: "user",
          content: message.images?.length
            ? [{ type: "text", text: message.content }, ...message.images.map((url) => ({ type: "image_url", image_url: { url } }))]
            : message.content,
        });
      } else if (message.content && !message.error) {
        messages.push({ role: "assistant", content: message.content });
      }
    }
    const body = { model: this.model.value, messages };
    const temperature = Number.parseFloat(this.temperature.value);
    if (Number.isFinite(temperature)) body.temperature = temperature;
    const maxTokens = Number.parseInt(this.maxTokens.value, 10);
    if (Number.isFinite(maxTokens)) body.max_tokens = maxTokens;
    if (this.speak.checked) body.modalities = ["text", "audio"];
    return body;
  }

  async ask() {
    const text = this.prompt.value.trim();
    if ((!text && !this.images.length) || this.controller) return;
    const question = { role: "user", content: text, images: this.images, at: Date.now() };
    this.conversation.messages.push(question);
    if (this.conversation.title === "New chat") this.conversation.title = titleOf(text);
    this.prompt.value = "";
    this.images = [];
    this.renderAttachments();
    this.messages.querySelector(".empty")?.remove();
    this.messages.append(renderQuestion(question));
    this.store();
    await this.answer();
  }

  /** Stream the answer to the conversation's last question. */
  async answer() {
    // The user may open another conversation while this answer streams: it is stored in its own.
    const conversation = this.conversation;
    const body = this.requestBody();
    const answer = { role: "assistant", content: "", media: { images: [], audio: [] }, model: body.model, at: Date.now() };
    conversation.messages.push(answer);
    const view = this.viewOf(answer);
    this.messages.append(view.element);
    this.scroll();
    this.controller = new AbortController();
    const signal = this.controller.signal;
    this.busy(true);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.receive(body, answer, view, signal);
          break;
        } catch (error) {
          // A gateway still loading its gate says when to come back: wait, then ask again.
          if (error.code !== "gateway_loading" || attempt >= LOADING_ATTEMPTS) throw error;
          view.status(`The gateway is still loading its models; asking again in ${error.retryAfter ?? 5} s…`);
          await sleep((error.retryAfter ?? 5) * 1000, signal);
          view.status("");
        }
      }
    } catch (error) {
      if (isAbort(error)) answer.stopped = true;
      else answer.error = plainError(error);
    } finally {
      this.controller = null;
      this.busy(false);
    }
    view.finish();
    this.scroll();
    this.store(conversation);
  }

  /** Read one streamed answer into `answer`, showing it as it comes. */
  async receive(body, answer, view, signal) {
    for await (const chunk of streamChat(body, signal)) {
      const choice = chunk.choices?.[0];
      const delta = choice?.delta || {};
      if (choice?.finish_reason) answer.finishReason = choice.finish_reason;
      if (delta.content) {
        answer.content += delta.content;
        view.showText();
        this.scroll();
      }
      // Pictures and speech travel beside the choices, as the chat completion carries them.
      if (chunk.images) answer.media.images.push(...chunk.images);
      if (chunk.audio) answer.media.audio.push(...chunk.audio);
      if (chunk.moe_metadata) answer.meta = chunk.moe_metadata;
      if (chunk.usage) answer.usage = chunk.usage;
    }
  }

  viewOf(message) {
    const retry = () => {
      if (this.controller) return; // one answer at a time
      this.conversation.messages = this.conversation.messages.filter((m) => m !== message);
      this.renderConversation();
      this.answer();
    };
    return new AnswerView(message, {
      feedback: (answer, score) => this.feedback(answer, score),
      retry,
    });
  }

  /** Thumbs up or down: a rating the feedback tracker learns from (5 good, 1 bad), counted once per vote. */
  async feedback(answer, score) {
    const requestId = answer.meta.request_id;
    await postJSON(
      "/v1/feedback",
      { request_id: requestId, rating: score > 0 ? 5 : 1, outcome: score > 0 ? "success" : "failure" },
      { headers: { "Idempotency-Key": `${requestId}:${score}` } },
    );
    answer.feedback = score;
    this.store();
  }

  busy(on) {
    this.send.hidden = on;
    this.stop.hidden = !on;
    this.prompt.setAttribute("aria-busy", String(on));
  }

  store(conversation = this.conversation) {
    conversation.updated = Date.now();
    const { trimmed } = saveConversation(conversation);
    this.notice.textContent = trimmed
      ? "Browser storage is full: pictures and speech of this conversation are not kept."
      : "";
    this.renderList();
  }

  open(conversation) {
    if (this.controller) this.controller.abort();
    this.conversation = conversation;
    if (conversation.model && [...this.model.options].some((o) => o.value === conversation.model)) {
      this.model.value = conversation.model;
    }
    this.renderConversation();
    this.renderList();
    this.prompt.focus();
  }

  renderConversation() {
    replace(
      this.messages,
      this.conversation.messages.length ? null : h("p", { class: "empty" }, "Ask anything. Pick auto to let the gate choose an expert, or name one."),
      this.conversation.messages.map((m) => (m.role === "user" ? renderQuestion(m) : this.viewOf(m).finish().element)),
    );
    this.scroll();
  }

  renderList() {
    const conversations = loadConversations();
    replace(
      this.list,
      conversations.map((c) =>
        h(
          "li",
          { class: c.id === this.conversation.id ? "active" : null },
          h("button", { type: "button", class: "open", title: new Date(c.updated).toLocaleString(), onclick: () => this.open(c) }, c.title),
          h("button", { type: "button", class: "delete", "aria-label": `Delete ${c.title}`, onclick: () => this.remove(c) }, "×"),
        ),
      ),
    );
  }

  remove(conversation) {
    deleteConversation(conversation.id);
    if (conversation.id === this.conversation.id) this.open(newConversation(this.model.value));
    else this.renderList();
  }

  scroll() {
    this.messages.scrollTop = this.messages.scrollHeight;
  }
}

function titleOf(text) {
  const line = text.split("\n")[0] || "Images";
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1)}…` : line;
}

/** An error as stored with the answer (an Error's own fields do not survive JSON). */
function plainError(error) {
  return {
    status: error.status ?? 0,
    title: error.title ?? "Something went wrong",
    message: error.message,
    code: error.code ?? null,
    retryAfter: error.retryAfter ?? null,
  };
}

/** Wait, unless the user presses Stop first. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("Stopped", "AbortError"));
    }, { once: true });
  });
}

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
