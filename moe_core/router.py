"""``MoERouter``: the seed's synchronous Python API over a gateway, without the HTTP server.

    router = MoERouter(config_path="moe.yaml", redis_url="redis://localhost:6379")
    decision = router.select_model(RoutingRequest(task_type="code_generation",
                                                  task_description="Add logging", cost_budget=0.01))
    router.record_feedback(request_id, outcome="success", quality_score=0.9, pr_merged=True)

It is a thin wrapper: a :class:`RoutingRequest` becomes the canonical chat request (the seed's
fields as routing hints), and every method calls the same gateway object (:class:`MoE`) the HTTP
server uses, so decisions, trackers and their store are exactly those of a served gateway. The
gateway runs on a private event loop in a background thread, so the methods are plain blocking
calls that work from scripts, notebooks and async programs alike.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from moe_core.config import load_config
from moe_core.errors import NotFound
from moe_core.models import ChatRequest, MoEResponse, RoutingDecision
from moe_core.orchestrator import MoE
from moe_core.plugins import MoEPluginManager
from moe_core.tracking.breaker import CircuitBreakerTracker
from moe_core.tracking.experiments import ABTestSpec, ABTestTracker
from moe_core.tracking.feedback import Feedback, FeedbackTracker
from moe_core.tracking.performance import PerformanceTracker

T = TypeVar("T")


SEED_ONLY_FIELDS = (
    "estimated_input_tokens",
    "estimated_output_tokens",
    "context_size",
    "requires_streaming",
    "requires_tools",
    "requires_vision",
    "requires_json_mode",
    "vendor_preference",
    "vendor_diversity",
    "enable_parallel",
)


class RoutingRequest(BaseModel):
    """The seed's routing request. Fields the canonical request has no place for travel in
    ``moe.metadata`` under their seed names, where gates that use them look."""

    model_config = ConfigDict(extra="forbid")

    task_description: str = Field(min_length=1)
    task_type: str | None = None
    estimated_input_tokens: int | None = Field(None, ge=0)
    estimated_output_tokens: int | None = Field(None, ge=0)
    context_size: int | None = Field(None, ge=0)
    cost_budget: float | None = Field(None, ge=0)
    quality_requirement: float | None = Field(None, ge=0, le=1)
    latency_requirement_ms: float | None = Field(None, gt=0)
    requires_streaming: bool = False
    requires_tools: bool = False
    requires_vision: bool = False
    requires_json_mode: bool = False
    vendor_preference: list[str] = Field(default_factory=list)
    vendor_diversity: bool = False
    enable_parallel: bool = False
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_chat_request(self) -> ChatRequest:
        """The canonical request: the description as the user message, the rest as hints."""
        metadata = dict(self.metadata)
        for name in SEED_ONLY_FIELDS:
            value = getattr(self, name)
            if value not in (None, False, []):
                metadata[name] = value
        hints: dict[str, Any] = {"metadata": metadata}
        for target, value in (
            ("task_type", self.task_type),
            ("budget_usd", self.cost_budget),
            ("quality_requirement", self.quality_requirement),
            ("latency_requirement_ms", self.latency_requirement_ms),
        ):
            if value is not None:
                hints[target] = value
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": self.task_description}],
            "moe": hints,
        }
        if self.user_id:
            body["user"] = self.user_id
        return ChatRequest.model_validate(body)


class MoERouter:
    """Route, learn from feedback, run A/B tests and watch breakers from plain Python."""

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        redis_url: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        redis_prefix: str | None = None,
        plugin_manager: MoEPluginManager | None = None,
    ) -> None:
        """
        :param config_path: a YAML configuration (default: ``$MOE_CONFIG``, else the embedded
            default); or pass ``config`` as a dict.
        :param redis_url: keep tracker state in this Redis (shared with gateways using it).
        :param redis_prefix: the key prefix there (default: the configuration's).
        """
        loaded = load_config(dict(config) if config is not None else config_path)
        if redis_url is not None:
            update: dict[str, Any] = {"store": "redis", "redis_url": redis_url}
            if redis_prefix is not None:
                update["prefix"] = redis_prefix
            loaded.tracking = loaded.tracking.model_copy(update=update)
        self.moe = MoE.from_config(loaded, plugin_manager=plugin_manager)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="moe-router", daemon=True
        )
        self._thread.start()
        self._experts_started = False
        try:
            self._call(self.moe.start(experts=False))
        except BaseException:
            self.close()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stop the gateway and its thread; the router cannot be used afterwards."""
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            self._call(self.moe.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> MoERouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _tracker(self, kind: type[T]) -> T:
        for tracker in self.moe.trackers.values():
            if isinstance(tracker, kind):
                return tracker
        raise NotFound(f"this gateway has no tracker of class {kind.__name__}")

    # -- routing -------------------------------------------------------------------------

    def select_model(
        self, request: RoutingRequest | ChatRequest | Mapping[str, Any]
    ) -> RoutingDecision:
        """The gate's decision for a request (no expert is called)."""
        if isinstance(request, RoutingRequest):
            request = request.to_chat_request()
        return self._call(self.moe.route(request))

    def complete(
        self,
        request: RoutingRequest | ChatRequest | Mapping[str, Any],
        request_id: str | None = None,
    ) -> MoEResponse:
        """Route and answer; experts are loaded on first use. Trackers see everything."""
        if isinstance(request, RoutingRequest):
            request = request.to_chat_request()

        async def answer() -> MoEResponse:
            if not self._experts_started:
                await self.moe.experts.start(wait=True)
                self._experts_started = True
            return await self.moe.complete(request, request_id=request_id)

        return self._call(answer())

    # -- learning ------------------------------------------------------------------------

    def record_feedback(self, request_id: str, **fields: Any) -> dict[str, Any]:
        """Record feedback on a request (fields of :class:`Feedback`: outcome, quality_score,
        rating, pr_merged, pr_reverted, comment, expert, task_type)."""
        feedback = Feedback(request_id=request_id, **fields)

        async def record() -> dict[str, Any]:
            stored = await self._tracker(FeedbackTracker).record(feedback, set(self.moe.experts))
            for tracker in self.moe.trackers.values():
                if isinstance(tracker, ABTestTracker):
                    await tracker.on_feedback(stored["request_id"], stored["score"])
            return stored

        return self._call(record())

    def learned_weight(self, expert: str, task_type: str | None = None) -> float:
        return self._tracker(FeedbackTracker).learned_weight(expert, task_type)

    def start_ab_test(
        self,
        expert_a: str,
        expert_b: str,
        task_type: str | None = None,
        traffic_split: float = 0.5,
        min_samples: int = 30,
        duration_days: float = 7.0,
    ) -> str:
        """Start comparing two experts; returns the test id."""
        spec = ABTestSpec(
            expert_a=expert_a,
            expert_b=expert_b,
            task_type=task_type,
            traffic_split=traffic_split,
            min_samples=min_samples,
            duration_days=duration_days,
        )
        tracker = self._tracker(ABTestTracker)
        return self._call(tracker.start_test(spec, set(self.moe.experts)))["id"]

    def analyze_ab_test(self, test_id: str) -> dict[str, Any]:
        """Figures per arm, significance tests, ``winner``, ``confidence``, ``recommendation``."""
        return self._call(self._tracker(ABTestTracker).analyse(test_id))

    analyse_ab_test = analyze_ab_test

    def stop_ab_test(self, test_id: str) -> dict[str, Any]:
        return self._call(self._tracker(ABTestTracker).stop_test(test_id))

    # -- watching ------------------------------------------------------------------------

    def get_circuit_breaker_status(self) -> dict[str, dict[str, Any]]:
        return self._call(self._tracker(CircuitBreakerTracker).fresh_status())

    def reset_circuit_breaker(self, name: str) -> dict[str, Any]:
        return self._call(self._tracker(CircuitBreakerTracker).reset(name))

    def get_routing_stats(self) -> dict[str, Any]:
        tracker = self._tracker(PerformanceTracker)

        async def stats() -> dict[str, Any]:
            await tracker.sync()
            return tracker.routing_stats()

        return self._call(stats())

    def get_expert_report(self, expert: str) -> dict[str, Any]:
        """Performance per task type and feedback figures of one expert."""
        report: dict[str, Any] = self._tracker(PerformanceTracker).report(expert)
        for tracker in self.moe.trackers.values():
            if isinstance(tracker, FeedbackTracker):
                report["feedback"] = tracker.summary(expert)
        return report
