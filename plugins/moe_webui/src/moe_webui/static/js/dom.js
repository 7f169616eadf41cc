// Building elements without innerHTML: text from the gateway (answers, expert names, errors) is
// always a text node, so nothing it contains is ever parsed as HTML. The one place HTML is made
// from an answer (Markdown) goes through DOMPurify in markdown.js.

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, any>} [attrs] attributes; `on<event>` keys attach listeners, `class`
 *   sets the class, `hidden`/`disabled` and other booleans are set or removed.
 * @param {...(Node|string|number|null|undefined|false|Array)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

/** Append children (strings become text nodes; null, undefined and false are skipped). */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** `document.getElementById` that fails loudly when the page and the script disagree. */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

/** A number as a short human figure: 1234 → "1,234", 0.000123 → "0.000123". */
export function formatNumber(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

/** Milliseconds as "850 ms" or "2.4 s". */
export function formatMs(value) {
  if (value === null || value === undefined) return "–";
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}

/** US dollars with enough digits to see a fraction of a cent. */
export function formatUsd(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "$0";
  return value >= 0.01 ? `$${value.toFixed(4)}` : `$${value.toPrecision(2)}`;
}

/** A probability as a percentage. */
export function formatPercent(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(digits)}%`;
}
