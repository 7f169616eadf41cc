"""Small trackers that implement the gate-facing signal protocols with fixed answers.

The real trackers (performance, circuit breaker, feedback weights, A/B tests) live elsewhere;
the multi-factor gate must only rely on the protocols in :mod:`moe_core.signals`, so these
stand-ins are all a routing test needs.
"""

from __future__ import annotations

from pydantic import Field

from moe_core.events import Event
from moe_core.models import ChatRequest
from moe_core.parts import Tracker
from moe_core.plugins import Options, Register, hookimpl
from moe_core.signals import PerformanceView


class FakeSignalsOptions(Options):
    open_circuits: list[str] = Field(default_factory=list, description="providers or experts")
    weights: dict[str, float] = Field(default_factory=dict)
    success_rates: dict[str, float] = Field(default_factory=dict)
    assign: str | None = None


class FakeSignals(Tracker):
    """Breakers, performance, learned weights and an A/B assignment, all as configured."""

    options: FakeSignalsOptions

    async def observe(self, event: Event) -> None:
        return None

    def circuit_open(self, provider: str) -> bool:
        return provider in self.options.open_circuits

    def performance(self, expert: str, task_type: str | None) -> PerformanceView | None:
        rate = self.options.success_rates.get(expert)
        if rate is None:
            return None
        return PerformanceView(
            samples=200,
            success_rate=rate,
            latency_ema_ms=500.0,
            latency_p95_ms=900.0,
            avg_cost_usd=0.001,
            confidence=1.0,
        )

    def learned_weight(self, expert: str, task_type: str | None) -> float:
        return self.options.weights.get(expert, 1.0)

    def assignment(self, request: ChatRequest, task_type: str | None) -> str | None:
        return self.options.assign


class _FakeSignalsPlugin:
    @hookimpl
    def moe_register_trackers(self, register: Register) -> None:
        register("fake-signals", FakeSignals, options=FakeSignalsOptions)


fake_signals_plugin = ("fake-signals", _FakeSignalsPlugin())
