// Answers are Markdown: rendered by marked, then sanitised by DOMPurify before they touch the page,
// because an answer is text nobody here wrote. Links open in a new tab without a referrer. An
// image an answer names on another site is not loaded (that would tell the site who reads the
// answer, and the page promises to talk to the gateway only): it becomes a link the user may
// follow. The page's Content-Security-Policy enforces the same should anything slip through.

import { marked } from "../vendor/marked-18.3.0.esm.js";
import "../vendor/purify-3.5.0.min.js";

const DOMPurify = globalThis.DOMPurify;

marked.use({ gfm: true, breaks: false });

const ELSEWHERE = "data-elsewhere";

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  if (node.tagName === "IMG" && !fromHere(node.getAttribute("src"))) {
    // Sanitising happens in an inert document, so nothing has been fetched yet.
    node.setAttribute(ELSEWHERE, node.getAttribute("src") || "");
    node.removeAttribute("src");
    node.removeAttribute("srcset");
  }
});

/** Inline data, or a URL of the gateway itself. */
function fromHere(src) {
  if (!src) return false;
  if (src.startsWith("data:image/")) return true;
  try {
    return new URL(src, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

/** An image kept off the page, shown as a link to it instead. */
function linkInstead(image) {
  const url = image.getAttribute(ELSEWHERE);
  const link = document.createElement("a");
  link.className = "image-elsewhere";
  link.textContent = `[image: ${image.getAttribute("alt") || url}]`;
  link.title = `Not loaded: ${url}`;
  if (/^https?:/i.test(url)) {
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  image.replaceWith(link);
}

/**
 * Render Markdown into `element` (replacing its content), safely.
 * @param {HTMLElement} element
 * @param {string} text
 */
export function renderMarkdown(element, text) {
  const html = DOMPurify.sanitize(marked.parse(text || ""), {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"],
    FORBID_ATTR: ["style"],
  });
  element.innerHTML = html;
  for (const image of element.querySelectorAll(`img[${ELSEWHERE}]`)) linkInstead(image);
  for (const block of element.querySelectorAll("pre")) addCopyButton(block);
}

function addCopyButton(block) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.title = "Copy this code";
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(block.querySelector("code")?.textContent ?? "");
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  block.append(button);
}
