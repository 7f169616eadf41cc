"""The ``memory`` tracker: per-expert counters and latency figures, kept in this process."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from moe_core.events import Event, ExpertCalled, RequestFinished
from moe_core.parts import Tracker
from moe_core.plugins import Options, Register, hookimpl


class MemoryTrackerOptions(Options):
    window: int = Field(1000, ge=10, description="Recent latencies kept per expert for p50/p95.")
    ema_alpha: float = Field(0.1, gt=0, le=1, description="Weight of the newest latency.")


@dataclass
class ExpertStats:
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ema_ms: float | None = None
    latencies: deque[float] = field(default_factory=deque)
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "calls": self.calls,
            "errors": self.errors,
            "success_rate": round(1 - self.errors / self.calls, 4) if self.calls else None,
            "latency_ema_ms": None
            if self.latency_ema_ms is None
            else round(self.latency_ema_ms, 3),
            "latency_p50_ms": percentile(ordered, 0.50),
            "latency_p95_ms": percentile(ordered, 0.95),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "last_error": self.last_error,
        }


class MemoryTracker(Tracker):
    """Counts, success rates, latency EMA and percentiles per expert; lost on restart."""

    options: MemoryTrackerOptions
    observes = (ExpertCalled, RequestFinished)

    def __init__(self, name: str, options: MemoryTrackerOptions) -> None:
        super().__init__(name, options)
        self.experts: dict[str, ExpertStats] = {}
        self.requests = 0
        self.failed_requests = 0

    async def observe(self, event: Event) -> None:
        if isinstance(event, ExpertCalled):
            if not (event.cancelled or event.cached):  # no call, or nobody waited for it
                self._record_call(event)
        elif isinstance(event, RequestFinished):
            self.requests += 1
            self.failed_requests += not event.ok

    def _record_call(self, event: ExpertCalled) -> None:
        stats = self.experts.get(event.expert)
        if stats is None:
            stats = self.experts[event.expert] = ExpertStats(
                latencies=deque(maxlen=self.options.window)
            )
        stats.calls += 1
        if not event.ok:
            stats.errors += 1
            stats.last_error = event.error
            return
        alpha = self.options.ema_alpha
        previous = stats.latency_ema_ms
        stats.latency_ema_ms = (
            event.latency_ms
            if previous is None
            else alpha * event.latency_ms + (1 - alpha) * previous
        )
        stats.latencies.append(event.latency_ms)
        if event.usage is not None:
            stats.prompt_tokens += event.usage.prompt_tokens
            stats.completion_tokens += event.usage.completion_tokens
        stats.cost_usd += event.cost_usd or 0.0

    def stats(self, expert: str) -> dict[str, Any] | None:
        """What is known of one expert, or ``None`` if it was never called."""
        stats = self.experts.get(expert)
        return None if stats is None else stats.as_dict()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "experts": {name: stats.as_dict() for name, stats in self.experts.items()},
        }


def percentile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolated percentile of an already sorted list."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 3)


@hookimpl
def moe_register_trackers(register: Register) -> None:
    register("memory", MemoryTracker, options=MemoryTrackerOptions)


@hookimpl
def moe_default_config() -> dict[str, Any]:
    return {"trackers": {"memory": {"kind": "memory"}}}
