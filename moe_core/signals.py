"""What trackers can tell gates: small protocols a gate looks for among the configured trackers.

A gate receives every configured tracker (``signals`` in :meth:`moe_core.parts.Gate.route`) and
must not care which plugin made it, so it asks by capability: a tracker that knows about circuit
breakers implements :class:`BreakerSignal`, one that keeps performance figures implements
:class:`PerformanceSignal`, and so on. A tracker implements any subset. Every method here is
synchronous and cheap because gates call them on the request path, many times per decision:
trackers backed by a shared store (Redis) answer from a local view they keep fresh, not with a
round trip per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from moe_core.models import ChatRequest


@dataclass(frozen=True, slots=True)
class PerformanceView:
    """What history says about one expert on one task type."""

    samples: int
    success_rate: float
    latency_ema_ms: float
    latency_p95_ms: float | None
    avg_cost_usd: float
    confidence: float
    """How much to trust these figures, 0..1 (sample size times recency)."""


@runtime_checkable
class BreakerSignal(Protocol):
    """Circuit breakers: whether calls to a provider (or expert) are currently refused."""

    def circuit_open(self, provider: str) -> bool: ...


@runtime_checkable
class PerformanceSignal(Protocol):
    """Observed performance per expert and task type (``None`` task type: all tasks)."""

    def performance(self, expert: str, task_type: str | None) -> PerformanceView | None: ...


@runtime_checkable
class WeightSignal(Protocol):
    """Weights learned from feedback; 1.0 is neutral, above favours the expert."""

    def learned_weight(self, expert: str, task_type: str | None) -> float: ...


@runtime_checkable
class ExperimentSignal(Protocol):
    """A/B tests: the expert a running experiment assigns this request to, if any."""

    def assignment(self, request: ChatRequest, task_type: str | None) -> str | None: ...


S = TypeVar("S")


def find_signals(signals: Mapping[str, object], protocol: type[S]) -> Iterator[S]:
    """The trackers among ``signals`` that implement ``protocol``, in configuration order."""
    for tracker in signals.values():
        if isinstance(tracker, protocol):
            yield tracker
