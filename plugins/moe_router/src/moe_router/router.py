"""``MoERouter``: a blocking Python API over a gateway, without the HTTP server.

    router = MoERouter(config_path="moe.yaml", redis_url="redis://localhost:6379")
    decision = router.select_model(RoutingRequest(task_type=TaskType.CODE_GENERATION,
                                                  task_description="Add logging", cost_budget=0.01))
    print(decision.selected_model, decision.estimated_cost, decision.fallback_models)
    router.record_feedback(request_id, outcome="success", quality_score=0.9, pr_merged=True)

It is a thin wrapper: a :class:`RoutingRequest` becomes the canonical chat request (its fields
as routing hints), and every method calls the same gateway object (:class:`MoE`) the HTTP server
uses, so decisions, trackers and their store are exactly those of a served gateway. The gateway
runs on a private event loop in a background thread, so the methods are plain blocking calls
that work from scripts, notebooks and async programs alike. ``router.learning_loop``,
``router.performance_tracker`` and the decisions :meth:`MoERouter.select_model` returns also
answer to the names users of the older router library know (see :mod:`moe_router.selection`
and :mod:`moe_router.learning`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from moe_core.config import load_config
from moe_core.errors import NotFound
from moe_core.models import ChatRequest, MoEResponse
from moe_core.orchestrator import MoE
from moe_core.plugins import MoEPluginManager, create_plugin_manager
from moe_core.signals import (
    BreakerControl,
    ExperimentRunner,
    FeedbackListener,
    FeedbackRecorder,
    PerformanceReporter,
    PerformanceView,
    WeightSignal,
    find_signals,
)
from moe_router.learning import (
    LearningDisabled,
    LearningLoop,
    PerformanceTrackerView,
    performance_of,
)
from moe_router.selection import (
    ModelCard,
    ModelDecision,
    best_quality,
    gate_estimated_cost,
    model_card,
    predicted_cost,
)

T = TypeVar("T")


METADATA_FIELDS = (  # what the canonical request has no field for: sent in moe.metadata
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
    """What a caller wants routed. Fields the canonical request has no place for travel in
    ``moe.metadata`` under these names, where gates that use them look (``task_type`` takes a
    :class:`~moe_router.selection.TaskType` or any task-type string)."""

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
    """Providers to favour; one provider may be given as a plain string."""
    vendor_diversity: bool = False
    enable_parallel: bool = False
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("vendor_preference", mode="before")
    @classmethod
    def _one_vendor_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def to_chat_request(self) -> ChatRequest:
        """The canonical request: the description as the user message, the rest as hints."""
        metadata = dict(self.metadata)
        for name in METADATA_FIELDS:
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


REGISTRY_EXPERTS: dict[str, Any] = {
    "kind": "openai",
    "base_url": "${MOE_UPSTREAM_BASE_URL:-http://127.0.0.1:4000/v1}",
}
"""The expert each model of a bare registry file becomes: its id asked for at one
OpenAI-compatible endpoint (a LiteLLM/OpenRouter-style proxy), as ``examples/multi-factor.yaml``
configures it; with the key in :data:`UPSTREAM_KEY_ENV` when that is set (a local proxy needs
none)."""
UPSTREAM_KEY_ENV = "MOE_UPSTREAM_API_KEY"


def registry_only_config(
    path: str | os.PathLike[str], plugins: MoEPluginManager | None
) -> dict[str, Any] | None:
    """A gateway configuration for a file that is only a model registry (``models:`` and no
    ``experts`` or ``registry``), or ``None`` for any other file.

    Every model becomes an expert (:data:`REGISTRY_EXPERTS`) that the ``multi-factor`` gate
    routes among; the trackers and the rest come from the installed plugins' defaults.
    """
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # load_config reports what is wrong with the file
    if not isinstance(data, dict) or "models" not in data or {"experts", "registry"} & set(data):
        return None
    defaults = (plugins or create_plugin_manager()).default_config()
    # The default's trackers and store, not its experts nor what is built around them.
    parts = ("experts", "gate", "preparers")
    config = {name: value for name, value in defaults.items() if name not in parts}
    experts = dict(REGISTRY_EXPERTS)
    if os.environ.get(UPSTREAM_KEY_ENV):
        experts["api_key_env"] = UPSTREAM_KEY_ENV
    config["registry"] = {"path": str(Path(path).resolve()), "experts": experts}
    config["gate"] = {"kind": "multi-factor"}
    return config


class MoERouter:
    """Route, learn from feedback, run A/B tests and watch breakers from plain Python."""

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        redis_url: str | None = None,
        enable_learning: bool = True,
        *,
        config: Mapping[str, Any] | None = None,
        redis_prefix: str | None = None,
        plugin_manager: MoEPluginManager | None = None,
    ) -> None:
        """
        :param config_path: a YAML configuration (default: ``$MOE_CONFIG``, else the embedded
            default), or a bare model registry file (``models:``), whose models become experts
            at ``$MOE_UPSTREAM_BASE_URL`` (key: ``$MOE_UPSTREAM_API_KEY``, if set) routed by
            the ``multi-factor`` gate; or pass ``config`` as a dict.
        :param redis_url: keep tracker state in this Redis (shared with gateways using it).
        :param enable_learning: False: this router records no feedback (:meth:`record_feedback`
            and ``learning_loop.collect_feedback`` raise
            :class:`~moe_router.learning.LearningDisabled`). Routing still uses what the trackers
            learned, including from feedback other gateways sharing the store record.
        :param redis_prefix: the key prefix there (default: the configuration's).
        """
        source: str | os.PathLike[str] | dict[str, Any] | None = (
            dict(config) if config is not None else config_path
        )
        if config is None and config_path is not None:
            source = registry_only_config(config_path, plugin_manager) or config_path
        loaded = load_config(source, plugins=plugin_manager)
        if redis_url is not None:
            tracking = loaded.section("tracking")  # the moe-tracking plugin's section
            tracking.store, tracking.redis_url = "redis", redis_url
            if redis_prefix is not None:
                tracking.prefix = redis_prefix
        self.enable_learning = enable_learning
        self.moe = MoE.from_config(loaded, plugin_manager=plugin_manager)
        self.learning_loop = LearningLoop(self)
        """Feedback, A/B tests and per-model reports under the names of the older library."""
        self.performance_tracker = PerformanceTrackerView(self)
        """Figures per model and task type, and recommendation weights."""
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

    def _tracker(self, capability: type[T]) -> T:
        """The first configured tracker offering ``capability`` (a protocol of the contract)."""
        for tracker in find_signals(self.moe.trackers, capability):
            return tracker
        raise NotFound(
            f"this gateway has no tracker offering {capability.__name__}; configure one "
            "(the moe-tracking plugin provides them)"
        )

    # -- routing -------------------------------------------------------------------------

    def select_model(
        self, request: RoutingRequest | ChatRequest | Mapping[str, Any]
    ) -> ModelDecision:
        """The gate's decision for a request (no expert is called): a
        :class:`~moe_core.models.RoutingDecision` that also reads as a model selection
        (``selected_model``, ``estimated_cost``, ``fallback_models``, ``parallel_models``)."""
        if isinstance(request, RoutingRequest):
            request = request.to_chat_request()
        chat = self.moe.parse(request)
        decision = self._call(self.moe.route(chat))
        cards = self.moe.experts.cards()
        cost = gate_estimated_cost(decision)
        if cost is None:  # a gate that records no prediction: make one for its experts
            cost = predicted_cost(decision, chat, cards)
        return ModelDecision.of(
            decision, estimated_cost=cost, estimated_quality=best_quality(decision, cards)
        )

    def get_model(self, model_id: str) -> ModelCard:
        """The card of the expert named ``model_id`` (costs, abilities, limits), with ``id``."""
        cards = self.moe.experts.cards()
        if model_id not in cards:
            raise NotFound(
                f"No expert named {model_id!r}; configured: {', '.join(cards)}",
                code="model_not_found",
            )
        return model_card(model_id, cards[model_id])

    _get_model_by_id = get_model  # the name scripts for the older library call

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
        """Record feedback on a request (outcome, quality_score, rating, pr_merged,
        pr_reverted, comment, expert, task_type); returns what was stored, with its score.

        Raises :class:`~moe_router.learning.LearningDisabled` on a router built with
        ``enable_learning=False``, and ``ValueError`` for invalid fields."""
        if not self.enable_learning:
            raise LearningDisabled(
                f"feedback on {request_id!r} not recorded: this router was built with "
                "enable_learning=False"
            )
        recorder = self._tracker(FeedbackRecorder)

        async def record() -> dict[str, Any]:
            fields["request_id"] = request_id
            stored = await recorder.record_feedback(fields, list(self.moe.experts))
            for listener in find_signals(self.moe.trackers, FeedbackListener):
                await listener.on_feedback(stored["request_id"], stored["score"])
            return stored

        return self._call(record())

    def learned_weight(self, expert: str, task_type: str | None = None) -> float:
        return self._tracker(WeightSignal).learned_weight(expert, task_type)

    def performance(self, expert: str, task_type: str | None = None) -> PerformanceView | None:
        """What the calls this gateway (and any sharing its store) made say of ``expert`` on
        ``task_type`` (all task types when ``None``); ``None`` before its first call."""

        async def synced() -> None:
            # Pending figures written and other instances' read, as routing statistics are.
            for reporter in find_signals(self.moe.trackers, PerformanceReporter):
                await reporter.sync()

        self._call(synced())
        return performance_of(self.moe.trackers, expert, task_type)

    def feedback_summary(self, expert: str, task_type: str | None = None) -> dict[str, Any] | None:
        """What feedback says of ``expert`` on ``task_type`` (counts, rates, averages, learned
        weight), or ``None`` when it has none."""
        for recorder in find_signals(self.moe.trackers, FeedbackRecorder):
            summary = recorder.feedback_summary(expert, task_type)
            if summary is not None:
                return summary
        return None

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
        spec = {
            "expert_a": expert_a,
            "expert_b": expert_b,
            "task_type": task_type,
            "traffic_split": traffic_split,
            "min_samples": min_samples,
            "duration_days": duration_days,
        }
        tracker = self._tracker(ExperimentRunner)
        return self._call(tracker.start_experiment(spec, list(self.moe.experts)))["id"]

    def analyze_ab_test(self, test_id: str) -> dict[str, Any]:
        """Figures per arm, significance tests, ``winner``, ``confidence``, ``recommendation``."""
        return self._call(self._tracker(ExperimentRunner).analyse(test_id))

    analyse_ab_test = analyze_ab_test

    def stop_ab_test(self, test_id: str) -> dict[str, Any]:
        return self._call(self._tracker(ExperimentRunner).stop_test(test_id))

    # -- watching ------------------------------------------------------------------------

    def get_circuit_breaker_status(self) -> dict[str, dict[str, Any]]:
        return self._call(self._tracker(BreakerControl).fresh_status())

    def reset_circuit_breaker(self, name: str) -> dict[str, Any]:
        return self._call(self._tracker(BreakerControl).reset(name))

    def get_routing_stats(self) -> dict[str, Any]:
        tracker = self._tracker(PerformanceReporter)

        async def stats() -> dict[str, Any]:
            await tracker.sync()
            return tracker.routing_stats()

        return self._call(stats())

    def get_expert_report(self, expert: str) -> dict[str, Any]:
        """Performance per task type and feedback figures of one expert."""
        report: dict[str, Any] = self._tracker(PerformanceReporter).report(expert)
        for tracker in find_signals(self.moe.trackers, FeedbackRecorder):
            report["feedback"] = tracker.feedback_summary(expert)
        return report
