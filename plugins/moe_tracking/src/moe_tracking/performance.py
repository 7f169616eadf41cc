"""The ``performance`` tracker: how each expert does on each task type, and how routing went.

Per expert x task type (and per expert over all tasks, task ``*``) it keeps calls, successes,
a latency EMA and recent latencies for percentiles, cost and tokens, and when it last saw a call;
the seed's confidence is ``min(1, calls / full_confidence_calls) x 0.5 ** (age_h / half_life_h)``.
Gates read it through :class:`moe_core.signals.PerformanceSignal`. It also counts routing
decisions (per expert, per strategy, confidence, cost) for ``GET /v1/routing/stats``.

It writes behind: events update the local view at once and are flushed to the store every
``tracking.refresh_s`` and at shutdown, so a ``kill -9`` may lose the last fraction of a second
of figures (never feedback, which is written before it is acknowledged).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from moe_core.builtins.memory import percentile
from moe_core.events import Event, ExpertCalled, RequestFinished, RouteDecided
from moe_core.plugins import Options
from moe_core.signals import PerformanceView
from moe_tracking.base import StoredTracker
from moe_tracking.store import Hash, apply_update

ALL_TASKS = "*"
_PERF = "perf:"
_LATENCIES = "lat:"
_ROUTING = "routing:totals"


class PerformanceOptions(Options):
    ema_alpha: float = Field(0.1, gt=0, le=1, description="Weight of the newest latency.")
    samples: int = Field(500, ge=10, description="Recent latencies kept for percentiles.")
    half_life_h: float = Field(168.0, gt=0, description="Confidence halves every this many hours.")
    full_confidence_calls: int = Field(100, ge=1, description="Calls for full sample confidence.")
    ttl_days: float = Field(30.0, gt=0, description="Figures not updated for this long expire.")


@dataclass
class _Figures:
    """The local view of one expert x task."""

    raw: Hash = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    _ordered: list[float] | None = None

    def number(self, name: str) -> float:
        value = self.raw.get(name, 0.0)
        return float(value) if isinstance(value, int | float) else 0.0

    def ordered(self) -> list[float]:
        """The latencies sorted, cached until the next sample: gates read p95 very often."""
        if self._ordered is None:
            self._ordered = sorted(self.latencies)
        return self._ordered

    def add_latency(self, latency_ms: float) -> None:
        self.latencies.appendleft(latency_ms)
        self._ordered = None

    def replace_latencies(self, latencies: list[float]) -> None:
        self.latencies.clear()
        self.latencies.extend(latencies)
        self._ordered = None


@dataclass
class _Pending:
    """Updates of one key folded since the last flush, written as one atomic update.

    ``ema_sum`` and ``decay`` let k latencies folded here be applied to the stored EMA in one
    step exactly as k sequential updates would: ``new = (1 - decay) * v + decay * old`` with
    ``v = ema_sum / (1 - decay)``.
    """

    incr: dict[str, float] = field(default_factory=dict)
    set: dict[str, float | str] = field(default_factory=dict)
    ema_sum: float = 0.0
    decay: float = 1.0
    samples: list[float] = field(default_factory=list)

    def add(self, incr: dict[str, float]) -> None:
        for name, amount in incr.items():
            self.incr[name] = self.incr.get(name, 0.0) + amount


class PerformanceTracker(StoredTracker):
    """Success rate, latency (EMA, p50, p95), cost and tokens per expert and task type."""

    options: PerformanceOptions
    observes = (ExpertCalled, RouteDecided, RequestFinished)
    writes_behind = True

    def __init__(self, name: str, options: PerformanceOptions) -> None:
        super().__init__(name, options)
        self._view: dict[tuple[str, str], _Figures] = {}
        self._routing: Hash = {}
        self._pending: dict[str, _Pending] = {}

    # -- events --------------------------------------------------------------------------

    async def observe(self, event: Event) -> None:
        # Nothing here waits on the store: updates are folded locally and flushed in the
        # background (and at shutdown), one atomic update per key.
        if isinstance(event, ExpertCalled):
            if not (event.cancelled or event.cached):  # no call, or nobody waited for it
                self._record_call(event)
        elif isinstance(event, RouteDecided):
            decision = event.decision
            incr = {
                "decisions": 1.0,
                f"expert:{decision.experts[0]}": 1.0,
                f"strategy:{decision.strategy or 'default'}": 1.0,
            }
            if decision.confidence is not None:
                incr |= {"confidence_sum": decision.confidence, "confidence_n": 1.0}
            self._count_routing(incr)
        elif isinstance(event, RequestFinished):
            cost = event.metadata.cost_usd if event.metadata is not None else None
            self._count_routing(
                {
                    "finished": 1.0,
                    "failed": float(not event.ok),
                    "cost_usd": cost or 0.0,
                    "latency_ms_sum": event.latency_ms,
                }
            )

    def _count_routing(self, incr: dict[str, float]) -> None:
        self._routing = apply_update(self._routing, incr, None, None)
        self._pending_for(_ROUTING).add(incr)

    def _pending_for(self, key: str) -> _Pending:
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        return pending

    def _record_call(self, event: ExpertCalled) -> None:
        incr = {"calls": 1.0, "ok": float(event.ok), "cost_usd": event.cost_usd or 0.0}
        if event.usage is not None:
            incr["prompt_tokens"] = float(event.usage.prompt_tokens)
            incr["completion_tokens"] = float(event.usage.completion_tokens)
        alpha = self.options.ema_alpha
        # Latency of a failure says how fast it failed, not how fast the expert answers.
        ema = {"latency_ema_ms": (event.latency_ms, alpha, None)} if event.ok else None
        marks = {"last_ts": time.time(), "expert": event.expert}
        for task in {ALL_TASKS, event.task_type or ALL_TASKS}:
            figures = self._figures(event.expert, task)
            figures.raw = apply_update(figures.raw, incr, ema, {**marks, "task": task})
            pending = self._pending_for(f"{event.expert}:{task}")
            pending.add(incr)
            pending.set.update(marks, task=task)
            if event.ok:
                figures.add_latency(event.latency_ms)
                pending.ema_sum = (1 - alpha) * pending.ema_sum + alpha * event.latency_ms
                pending.decay *= 1 - alpha
                pending.samples.append(event.latency_ms)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        ttl_s = self.options.ttl_days * 86400
        for key, update in pending.items():
            if key == _ROUTING:
                await self.store.update(_ROUTING, incr=update.incr)
                continue
            ema = None
            if update.samples:
                weight = 1 - update.decay
                ema = {"latency_ema_ms": (update.ema_sum / weight, weight, None)}
            await self.store.update(
                _PERF + key, incr=update.incr, ema=ema, set=update.set, ttl_s=ttl_s
            )
            await self.store.push(_LATENCIES + key, update.samples, self.options.samples)

    def _figures(self, expert: str, task: str) -> _Figures:
        figures = self._view.get((expert, task))
        if figures is None:
            figures = self._view[(expert, task)] = _Figures(
                latencies=deque(maxlen=self.options.samples)
            )
        return figures

    async def refresh(self) -> None:
        for raw in (await self.store.scan(_PERF)).values():
            expert, task = str(raw.get("expert", "")), str(raw.get("task", ALL_TASKS))
            if not expert:
                continue
            figures = self._figures(expert, task)
            figures.raw = raw
            figures.replace_latencies(await self.store.values(f"{_LATENCIES}{expert}:{task}"))
        self._routing = await self.store.get(_ROUTING)

    # -- what gates and reports read -----------------------------------------------------

    def performance(self, expert: str, task_type: str | None) -> PerformanceView | None:
        figures = self._view.get((expert, task_type or ALL_TASKS))
        if figures is None or not figures.number("calls"):
            return None
        calls = figures.number("calls")
        return PerformanceView(
            samples=int(calls),
            success_rate=figures.number("ok") / calls,
            latency_ema_ms=figures.number("latency_ema_ms"),
            latency_p95_ms=percentile(figures.ordered(), 0.95),
            avg_cost_usd=figures.number("cost_usd") / calls,
            confidence=self._confidence(calls, figures.number("last_ts")),
        )

    def _confidence(self, calls: float, last_ts: float) -> float:
        sample = min(1.0, calls / self.options.full_confidence_calls)
        age_h = max(0.0, time.time() - last_ts) / 3600
        return sample * 0.5 ** (age_h / self.options.half_life_h)

    def report(self, expert: str) -> dict[str, Any]:
        """Every figure known about one expert, overall and per task type."""
        tasks = {task: self.figures(expert, task) for (name, task) in self._view if name == expert}
        overall = tasks.pop(ALL_TASKS, None)
        return {"expert": expert, "overall": overall, "tasks": tasks}

    def figures(self, expert: str, task: str) -> dict[str, Any] | None:
        figures = self._view.get((expert, task))
        if figures is None or not figures.number("calls"):
            return None
        calls = figures.number("calls")
        ordered = figures.ordered()
        return {
            "calls": int(calls),
            "successes": int(figures.number("ok")),
            "success_rate": round(figures.number("ok") / calls, 4),
            "latency_ema_ms": round(figures.number("latency_ema_ms"), 3),
            "latency_p50_ms": percentile(ordered, 0.50),
            "latency_p95_ms": percentile(ordered, 0.95),
            "avg_cost_usd": round(figures.number("cost_usd") / calls, 8),
            "cost_usd": round(figures.number("cost_usd"), 8),
            "prompt_tokens": int(figures.number("prompt_tokens")),
            "completion_tokens": int(figures.number("completion_tokens")),
            "confidence": round(self._confidence(calls, figures.number("last_ts")), 4),
            "last_call_at": figures.number("last_ts") or None,
        }

    def routing_stats(self) -> dict[str, Any]:
        """The seed's routing statistics: volume, distribution over experts and strategies."""
        totals = self._routing
        experts = _counts(totals, "expert:")
        strategies = _counts(totals, "strategy:")

        def number(name: str) -> float:
            value = totals.get(name, 0.0)
            return float(value) if isinstance(value, int | float) else 0.0

        finished = number("finished")
        confidence_n = number("confidence_n")
        return {
            "total_requests": int(number("decisions")),
            "finished_requests": int(finished),
            "failed_requests": int(number("failed")),
            "unique_experts_used": len(experts),
            "expert_distribution": dict(sorted(experts.items(), key=lambda kv: -kv[1])),
            "strategy_distribution": strategies,
            "total_cost_usd": round(number("cost_usd"), 8),
            "avg_cost_usd": round(number("cost_usd") / finished, 8) if finished else None,
            "avg_latency_ms": round(number("latency_ms_sum") / finished, 3) if finished else None,
            "avg_confidence": round(number("confidence_sum") / confidence_n, 4)
            if confidence_n
            else None,
        }

    def snapshot(self) -> dict[str, Any]:
        experts = sorted({expert for expert, _ in self._view})
        return {"routing": self.routing_stats(), "experts": {e: self.report(e) for e in experts}}


def _counts(totals: Hash, prefix: str) -> dict[str, int]:
    return {
        name.removeprefix(prefix): int(float(count))
        for name, count in totals.items()
        if name.startswith(prefix)
    }
