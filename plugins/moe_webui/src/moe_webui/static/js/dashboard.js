// The dashboard: what the gateway's trackers know, read from the same JSON routes any client can
// call, refreshed every few seconds while the dashboard is on screen. Figures over time are the
// samples this page took since it opened (the routes give totals, not history).

import { ApiError, call, getJSON } from "./api.js";
import { bars, columns, sparkline } from "./charts.js";
import { byId, formatMs, formatNumber, formatPercent, formatUsd, h, replace } from "./dom.js";
import { loadConversations } from "./conversations.js";

const REFRESH_MS = 5000;
const SAMPLES = 120; // ten minutes at one sample every five seconds

export class DashboardView {
  constructor() {
    this.samples = [];
    this.timer = null;
    this.active = false;
    this.sections = {
      summary: byId("dash-summary"),
      experts: byId("dash-experts"),
      trends: byId("dash-trends"),
      routing: byId("dash-routing"),
      recent: byId("dash-recent"),
      breakers: byId("dash-breakers"),
      abTests: byId("dash-ab-tests"),
      rateLimits: byId("dash-rate-limits"),
      plugins: byId("dash-plugins"),
    };
    this.updated = byId("dash-updated");
    byId("dash-refresh").addEventListener("click", () => this.refresh());
    document.addEventListener("visibilitychange", () => this.schedule());
  }

  /** Start or stop refreshing as the dashboard is shown or hidden. */
  show(active) {
    this.active = active;
    if (active) this.refresh();
    else this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.active && document.visibilityState === "visible") {
      this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
    }
  }

  async refresh() {
    clearTimeout(this.timer);
    const [gateway, stats, routing, breakers, abTests, rateLimits, plugins] = await Promise.allSettled([
      health(),
      getJSON("/-/stats"),
      getJSON("/v1/routing/stats"),
      getJSON("/v1/circuit-breakers"),
      this.abTests(),
      getJSON("/v1/rate-limits"),
      getJSON("/-/plugins"),
    ]);
    const figures = expertFigures(stats.value);
    this.sample(figures);
    this.section("summary", gateway, () => this.renderSummary(gateway.value, routing.value, stats.value));
    this.section("experts", stats, () => this.renderExperts(gateway.value, figures));
    this.section("trends", stats, () => this.renderTrends());
    this.section("routing", routing, () => this.renderRouting(routing.value));
    this.section("recent", { status: "fulfilled" }, () => renderRecent());
    this.section("breakers", breakers, () => this.renderBreakers(breakers.value.data || {}));
    this.section("abTests", abTests, () => renderAbTests(abTests.value));
    this.section("rateLimits", rateLimits, () => renderRateLimits(rateLimits.value));
    this.section("plugins", plugins, () => renderPlugins(plugins.value));
    this.updated.textContent = `Updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
    this.schedule();
  }

  /** Render one section, or say why it cannot be shown (a tracker not configured, an error). */
  section(name, result, render) {
    const target = this.sections[name];
    if (result.status === "rejected") {
      const error = result.reason;
      replace(
        target,
        h(
          "p",
          { class: error instanceof ApiError && error.code === "tracker_not_configured" ? "hint" : "error" },
          error instanceof ApiError ? `${error.title}: ${error.message}` : String(error),
        ),
      );
      return;
    }
    replace(target, render());
  }

  async abTests() {
    const tests = (await getJSON("/v1/ab-tests")).data || [];
    return Promise.all(tests.map((test) => getJSON(`/v1/ab-tests/${encodeURIComponent(test.id)}`)));
  }

  sample(figures) {
    this.samples.push({ at: Date.now(), figures });
    if (this.samples.length > SAMPLES) this.samples.shift();
  }

  renderSummary(health, routing, stats) {
    const status = health?.status ?? "unknown";
    const memory = Object.values(stats || {}).find((s) => typeof s?.requests === "number");
    const cards = [
      ["Gateway", status],
      ["Requests", formatNumber(routing?.total_requests ?? memory?.requests)],
      ["Failed", formatNumber(routing?.failed_requests ?? memory?.failed_requests)],
      ["Average latency", formatMs(routing?.avg_latency_ms)],
      ["Average confidence", formatPercent(routing?.avg_confidence)],
      ["Total cost", formatUsd(routing?.total_cost_usd)],
    ];
    return cards.map(([label, value]) =>
      h("div", { class: "card" }, h("span", { class: "card-label" }, label), h("span", { class: "card-value" }, value)),
    );
  }

  renderExperts(health, figures) {
    const names = [...new Set([...Object.keys(health?.experts || {}), ...Object.keys(figures)])];
    return table(
      ["Expert", "State", "Calls", "Error rate", "p50", "p95", "Tokens in / out", "Cost", "Calls per refresh"],
      names.map((name) => {
        const f = figures[name] || {};
        const state = health?.experts?.[name]?.state ?? "–";
        const calls = this.deltas(name, "calls");
        return [
          name,
          h("span", { class: `state state-${state}` }, state),
          formatNumber(f.calls ?? 0),
          f.calls ? formatPercent(1 - (f.success_rate ?? 1)) : "–",
          formatMs(f.latency_p50_ms),
          formatMs(f.latency_p95_ms),
          f.calls ? `${formatNumber(f.prompt_tokens)} / ${formatNumber(f.completion_tokens)}` : "–",
          formatUsd(f.cost_usd),
          columns(calls, { label: `${name}: calls per refresh, last ${calls.length}` }),
        ];
      }),
      { testid: "experts-table" },
    );
  }

  /** Per-refresh increases of one figure of one expert, oldest first. */
  deltas(name, field) {
    const values = this.samples.map((s) => s.figures[name]?.[field] ?? 0);
    return values.slice(1).map((value, index) => Math.max(0, value - values[index]));
  }

  renderTrends() {
    const total = (field) => this.samples.map((s) => Object.values(s.figures).reduce((sum, f) => sum + (f[field] || 0), 0));
    const tokens = this.samples.map((s) =>
      Object.values(s.figures).reduce((sum, f) => sum + (f.prompt_tokens || 0) + (f.completion_tokens || 0), 0),
    );
    const cost = total("cost_usd");
    const calls = total("calls");
    const since = this.samples.length ? new Date(this.samples[0].at).toLocaleTimeString() : "";
    const chart = (title, values, text) =>
      h("figure", { class: "trend" }, h("figcaption", {}, title, h("strong", {}, text)), sparkline(values, { width: 260, height: 48, label: `${title} since ${since}` }));
    return [
      chart("Calls", calls, formatNumber(calls.at(-1) ?? 0)),
      chart("Tokens", tokens, formatNumber(tokens.at(-1) ?? 0)),
      chart("Cost", cost, formatUsd(cost.at(-1) ?? 0)),
      h("p", { class: "hint" }, `Totals of every expert, sampled by this page since ${since}.`),
    ];
  }

  renderRouting(routing) {
    const distribution = Object.entries(routing.expert_distribution || {});
    const total = distribution.reduce((sum, [, n]) => sum + n, 0);
    const strategies = Object.entries(routing.strategy_distribution || {}).map(([s, n]) => `${s}: ${n}`).join(", ");
    return [
      distribution.length
        ? bars(distribution.map(([name, n]) => [name, n, `${n} (${formatPercent(total ? n / total : 0, 0)})`]))
        : h("p", { class: "hint" }, "No routing decisions yet."),
      h(
        "p",
        {},
        `Average gate confidence ${formatPercent(routing.avg_confidence)} over ${formatNumber(routing.total_requests)} decisions`,
        strategies ? ` · strategies: ${strategies}` : "",
      ),
    ];
  }

  renderBreakers(breakers) {
    const names = Object.keys(breakers);
    if (!names.length) return h("p", { class: "hint" }, "Every breaker is closed: no expert has failed yet.");
    return table(
      ["Breaker", "State", "Failures in a row", "Times opened", "Probe in", "Last error", ""],
      names.map((name) => {
        const b = breakers[name];
        const status = h("span", { class: "reset-status", role: "status" });
        const reset = h("button", { type: "button", class: "reset", "aria-label": `Reset ${name}` }, "Reset");
        reset.addEventListener("click", () => this.reset(name, status));
        return [
          name,
          h("span", { class: `state state-${b.state}` }, b.state),
          formatNumber(b.consecutive_failures),
          formatNumber(b.times_opened),
          b.probe_in_s === null || b.probe_in_s === undefined ? "–" : `${Math.ceil(b.probe_in_s)} s`,
          b.last_error || "–",
          [reset, status],
        ];
      }),
      { testid: "breakers-table" },
    );
  }

  /** Close a breaker by hand: an admin action, so the call asks for an admin key if refused. */
  async reset(name, status) {
    status.textContent = "Resetting…";
    try {
      await call(`/v1/circuit-breakers/${encodeURIComponent(name)}/reset`, { method: "POST", admin: true });
      await this.refresh();
    } catch (error) {
      status.textContent = `${error.title ?? "Failed"}: ${error.message}`;
    }
  }
}

/** The gateway's health: public (load balancers probe it), and a JSON body even as a 503. */
export async function health() {
  const response = await fetch("/health", { cache: "no-store" });
  return response.json();
}

/** Per-expert figures from whichever trackers keep them (performance, memory), by expert. */
export function expertFigures(stats) {
  const figures = {};
  for (const snapshot of Object.values(stats || {})) {
    for (const [name, entry] of Object.entries(snapshot?.experts || {})) {
      // The performance tracker nests its figures under "overall"; the memory tracker does not.
      const f = entry?.overall ?? entry;
      if (f && typeof f.calls === "number" && !(name in figures)) figures[name] = f;
    }
  }
  return figures;
}

function renderRecent() {
  const answers = loadConversations()
    .flatMap((c) => c.messages)
    .filter((m) => m.role === "assistant" && m.meta)
    .sort((a, b) => b.at - a.at)
    .slice(0, 10);
  if (!answers.length) return h("p", { class: "hint" }, "No answers in this browser yet.");
  return table(
    ["When", "Asked for", "Answered by", "Confidence", "Gate", "Latency", "Fallbacks"],
    answers.map((m) => [
      new Date(m.at).toLocaleTimeString(),
      m.model,
      (m.meta.experts_used || []).join(", "),
      formatPercent(m.meta.confidence),
      m.meta.gate,
      formatMs(m.meta.total_latency_ms),
      (m.meta.fallbacks || []).map((f) => f.expert).join(", ") || "–",
    ]),
  );
}

function renderAbTests(tests) {
  if (!tests.length) return h("p", { class: "hint" }, "No A/B test has been started (POST /v1/ab-tests).");
  return table(
    ["Test", "A", "B", "Status", "Samples A / B", "Winner", "Confidence", "Recommendation"],
    tests.map((t) => [
      t.id,
      t.expert_a,
      t.expert_b,
      t.status,
      `${t.arms?.a?.samples ?? t.samples?.a ?? 0} / ${t.arms?.b?.samples ?? t.samples?.b ?? 0}`,
      t.winner || "–",
      formatPercent(t.confidence),
      t.recommendation || "",
    ]),
  );
}

function renderRateLimits(limits) {
  const rows = [
    ["Every API key", limits.per_key],
    ...Object.entries(limits.per_expert || {}).map(([expert, l]) => [`Expert ${expert}`, l]),
  ];
  const describe = (l) =>
    [l?.requests_per_minute && `${l.requests_per_minute} requests/min`, l?.tokens_per_minute && `${l.tokens_per_minute} tokens/min`]
      .filter(Boolean)
      .join(", ") || "no limit";
  const usage = Object.entries(limits.this_minute || {});
  return [
    table(["Who", "Limit"], rows.map(([who, l]) => [who, describe(l)])),
    usage.length
      ? table(["Used this minute by", "Requests", "Tokens"], usage.map(([who, u]) => [who, formatNumber(u.requests ?? 0), formatNumber(u.tokens ?? 0)]))
      : h("p", { class: "hint" }, "Nothing counted this minute."),
  ];
}

function renderPlugins(plugins) {
  return table(
    ["Plugin", "Distribution", "Version", "Kinds", "Config sections"],
    plugins.map((p) => [
      p.name,
      p.distribution || "–",
      p.version || "–",
      Object.entries(p.kinds || {}).map(([part, names]) => `${part}: ${names.join(", ")}`).join("; ") || "–",
      (p.sections || []).join(", ") || "–",
    ]),
  );
}

function table(headers, rows, { testid } = {}) {
  return h(
    "table",
    { "data-testid": testid },
    h("thead", {}, h("tr", {}, headers.map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))),
  );
}
