"""What trackers offer others: small protocols looked for among the configured trackers.

A gate receives every configured tracker (``signals`` in :meth:`moe_core.parts.Gate.route`) and
must not care which plugin made it, so it asks by capability: a tracker that knows about circuit
breakers implements :class:`BreakerSignal`, one that keeps performance figures implements
:class:`PerformanceSignal`, and so on. A tracker implements any subset. Every method here is
synchronous and cheap because gates call them on the request path, many times per decision:
trackers backed by a shared store (Redis) answer from a local view they keep fresh, not with a
round trip per call.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

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


# What trackers let a caller do (an HTTP route, the Python API): not on the request path, so
# these may await their store.


@runtime_checkable
class FeedbackRecorder(Protocol):
    """Takes feedback on answered requests (the ``feedback`` tracker)."""

    async def record_feedback(
        self, fields: Mapping[str, Any], experts: Collection[str]
    ) -> dict[str, Any]:
        """Validate and store ``fields`` (``request_id`` plus judgements) durably; returns what
        was stored, including its ``score`` in 0..1. Invalid fields raise ``ValueError``."""
        ...

    def feedback_summary(self, expert: str, task_type: str | None = None) -> dict[str, Any] | None:
        """What feedback says of ``expert``, or ``None`` when there is none."""
        ...


@runtime_checkable
class FeedbackListener(Protocol):
    """Learns from a recorded feedback's score (A/B tests count it for the request's arm)."""

    async def on_feedback(self, request_id: str, score: float) -> None: ...


@runtime_checkable
class ExperimentRunner(Protocol):
    """Starts, analyses and stops A/B tests between two experts (the ``ab-tests`` tracker)."""

    async def start_experiment(
        self, fields: Mapping[str, Any], experts: Collection[str]
    ) -> dict[str, Any]:
        """Start a test from ``fields`` (``expert_a``, ``expert_b``, ``task_type``,
        ``traffic_split``, ...); returns it with its ``id``."""
        ...

    async def analyse(self, test_id: str) -> dict[str, Any]: ...

    async def stop_test(self, test_id: str) -> dict[str, Any]: ...


@runtime_checkable
class BreakerControl(Protocol):
    """Circuit breakers a caller can inspect and reset."""

    async def fresh_status(self) -> dict[str, dict[str, Any]]: ...

    async def reset(self, target: str) -> dict[str, Any]: ...


@runtime_checkable
class PerformanceReporter(Protocol):
    """Routing statistics and per-expert reports (the ``performance`` tracker)."""

    async def sync(self) -> None:
        """Write pending figures and read what other instances wrote."""
        ...

    def routing_stats(self) -> dict[str, Any]: ...

    def report(self, expert: str) -> dict[str, Any]: ...


S = TypeVar("S")


def find_signals(signals: Mapping[str, object], protocol: type[S]) -> Iterator[S]:
    """The trackers among ``signals`` that implement ``protocol``, in configuration order."""
    for tracker in signals.values():
        if isinstance(tracker, protocol):
            yield tracker
