// Small SVG charts drawn from numbers the dashboard already holds: no charting library, because
// two shapes (a line over time, horizontal bars) are all the dashboard needs.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  element.append(...children.flat());
  return element;
}

/**
 * A line of `values` (oldest first), from their lowest to their highest: for running totals,
 * whose change matters more than their distance from zero.
 * @param {number[]} values
 * @param {{width?: number, height?: number, label: string}} options `label` is read by screen
 *   readers and shown as a tooltip.
 */
export function sparkline(values, { width = 120, height = 28, label }) {
  const low = Math.min(...values);
  const span = Math.max(...values) - low;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const y = (value) => (span ? height - 2 - ((value - low) / span) * (height - 4) : height / 2);
  const points = values.map((value, index) => `${(index * step).toFixed(1)},${y(value).toFixed(1)}`).join(" ");
  return svg(
    "svg",
    { class: "sparkline", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    values.length > 1
      ? svg("polyline", { points, fill: "none", "stroke-width": 1.5 })
      : svg("line", { x1: 0, x2: width, y1: height / 2, y2: height / 2 }),
  );
}

/**
 * One column per value (oldest first), from zero: for counts per interval.
 * @param {number[]} values
 * @param {{width?: number, height?: number, label: string}} options
 */
export function columns(values, { width = 120, height = 24, label }) {
  const max = Math.max(...values, 0);
  const slot = values.length ? width / values.length : width;
  return svg(
    "svg",
    { class: "columns", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5 }),
    values.map((value, index) => {
      const tall = max ? (value / max) * (height - 2) : 0;
      return svg("rect", { x: (index * slot + 0.5).toFixed(1), y: (height - tall).toFixed(1), width: Math.max(1, slot - 1).toFixed(1), height: tall.toFixed(1) });
    }),
  );
}

/**
 * Horizontal bars, one per entry, each as long as its share of the largest.
 * @param {Array<[string, number, string]>} entries name, value, the text shown beside the bar.
 */
export function bars(entries, { width = 240, barHeight = 16 } = {}) {
  const max = Math.max(...entries.map(([, value]) => value), 0);
  return h(
    "div",
    { class: "bars" },
    entries.map(([name, value, text]) =>
      h(
        "div",
        { class: "bar-row" },
        h("span", { class: "bar-name" }, name),
        svg(
          "svg",
          { width, height: barHeight, viewBox: `0 0 ${width} ${barHeight}`, role: "img", "aria-label": `${name}: ${text}` },
          svg("rect", { class: "bar", x: 0, y: 2, height: barHeight - 4, width: max ? Math.max(2, (value / max) * width) : 0 }),
        ),
        h("span", { class: "bar-value" }, text),
      ),
    ),
  );
}
