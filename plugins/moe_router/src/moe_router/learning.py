"""Feedback, A/B tests and per-model figures, under the names users of the older router
library know: ``FeedbackData``, ``router.learning_loop`` and ``router.performance_tracker``.

Nothing here stores anything of its own: each name translates to the router's gateway, and so
to its trackers, reached through the protocols of :mod:`moe_core.signals`; what a script sees is
what the HTTP API and every instance sharing the store see. Where this API's meaning differs
from the gateway's, the translation is explicit: an A/B test's ``traffic_split`` is the share
sent to ``model_a`` here and to ``expert_b`` in the gateway, and weights here are on a 0..1 scale
(0.5 neutral) where the gateway's learned weights are 0..2 (1.0 neutral).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moe_core.models import RoutingDecision
from moe_core.signals import PerformanceSignal, PerformanceView, WeightSignal, find_signals
from moe_router.multi_factor import NEUTRAL_SCORE, history_score, learned_score
from moe_router.selection import TaskType

if TYPE_CHECKING:
    from moe_router.router import MoERouter


class LearningDisabled(RuntimeError):
    """Feedback was given to a router built with ``enable_learning=False``."""


class FeedbackData(BaseModel):
    """Feedback on one answered request; :meth:`feedback_fields` is what the gateway stores.

    ``actual_cost`` and ``actual_latency_ms`` are accepted but not stored: the gateway measures
    the cost and latency of the calls it makes itself (see ``performance_tracker.get_metrics``),
    and feedback judges the answer. ``feedback_notes`` and ``error_message`` become its comment.
    """

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1)
    model_id: str | None = Field(
        None, description="Who answered; needed only when the gateway does not know the request."
    )
    task_type: str | None = None
    outcome: Literal["success", "partial", "failure"] | None = None
    quality_score: float | None = Field(None, ge=0, le=1)
    actual_cost: float | None = Field(None, ge=0)
    actual_latency_ms: float | None = Field(None, ge=0)
    pr_merged: bool | None = None
    pr_reverted: bool | None = None
    user_rating: int | None = Field(None, ge=1, le=5)
    error_message: str | None = None
    feedback_notes: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def feedback_fields(self) -> dict[str, Any]:
        """The fields a :class:`~moe_core.signals.FeedbackRecorder` takes (set ones only)."""
        notes = [text for text in (self.feedback_notes, self.error_message) if text]
        fields = {
            "request_id": self.request_id,
            "outcome": self.outcome,
            "quality_score": self.quality_score,
            "rating": self.user_rating,
            "pr_merged": self.pr_merged,
            "pr_reverted": self.pr_reverted,
            "comment": "\n".join(notes) or None,
            "expert": self.model_id,
            "task_type": self.task_type,
        }
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """How one model does on one task type.

    Figures come from the calls the gateway made (``source == "calls"``); for a model it has
    not called, from the feedback given on it (``"feedback"``: requests are feedbacks, the
    success rate is that of their outcomes, and latency and cost are 0.0 because feedback does
    not measure them), else nothing is known (``"none"``, everything 0).
    """

    model_id: str
    task_type: str | None
    total_requests: int
    success_rate: float
    avg_latency_ms: float
    avg_cost: float
    p95_latency_ms: float | None
    avg_quality: float | None
    avg_rating: float | None
    feedback_count: int
    confidence: float | None
    """How much to trust call figures (sample size times recency); None for feedback."""
    source: Literal["calls", "feedback", "none"]


def _task(task_type: TaskType | str | None) -> str | None:
    return None if task_type is None else str(task_type)


def _ratio(value: Any) -> float | None:
    return None if value is None else float(value)


class PerformanceTrackerView:
    """``router.performance_tracker``: figures per model and task type, read from the trackers
    the router's gateway has (``performance`` for calls, ``feedback`` for judgements)."""

    def __init__(self, router: MoERouter) -> None:
        self._router = router

    def get_metrics(
        self, model_id: str, task_type: TaskType | str | None = None
    ) -> PerformanceMetrics:
        task = _task(task_type)
        view = self._router.performance(model_id, task)
        summary = self._router.feedback_summary(model_id, task) or {}
        feedback = int(summary.get("feedback", 0))
        common = {
            "model_id": model_id,
            "task_type": task,
            "avg_quality": _ratio(summary.get("avg_quality")),
            "avg_rating": _ratio(summary.get("avg_rating")),
            "feedback_count": feedback,
        }
        if view is not None:
            return PerformanceMetrics(
                total_requests=view.samples,
                success_rate=view.success_rate,
                avg_latency_ms=view.latency_ema_ms,
                avg_cost=view.avg_cost_usd,
                p95_latency_ms=view.latency_p95_ms,
                confidence=view.confidence,
                source="calls",
                **common,
            )
        return PerformanceMetrics(
            total_requests=feedback,
            success_rate=_ratio(summary.get("success_rate")) or 0.0,
            avg_latency_ms=0.0,
            avg_cost=0.0,
            p95_latency_ms=None,
            confidence=None,
            source="feedback" if feedback else "none",
            **common,
        )

    def get_recommendation_weight(
        self, model_id: str, task_type: TaskType | str | None = None
    ) -> float:
        """How strongly history recommends the model, 0..1 (0.5 neutral): the mean of the two
        signals the ``multi-factor`` gate scores, each mapped to 0..1 as the gate maps it.

        History is the observed success rate, trusted as far as its confidence goes (neutral
        without calls); the learned weight is what feedback taught (neutral without feedback).
        """
        task = _task(task_type)
        return recommendation_weight(
            self._router.performance(model_id, task),
            learned_weight(self._router.moe.trackers, model_id, task),
        )


def recommendation_weight(view: PerformanceView | None, learned: float) -> float:
    """History (neutral without calls) and a learned weight (0..2), each scored as the
    ``multi-factor`` gate scores them, averaged."""
    history = NEUTRAL_SCORE if view is None else history_score(view)
    return (history + learned_score(learned)) / 2


def learned_weight(trackers: Mapping[str, object], expert: str, task_type: str | None) -> float:
    """Every weight tracker's learned weight multiplied, as the gate combines them (1.0 neutral,
    also when no tracker learns weights)."""
    weight = 1.0
    for tracker in find_signals(trackers, WeightSignal):
        weight *= tracker.learned_weight(expert, task_type)
    return weight


def performance_of(
    trackers: Mapping[str, object], expert: str, task_type: str | None
) -> PerformanceView | None:
    for tracker in find_signals(trackers, PerformanceSignal):
        view = tracker.performance(expert, task_type)
        if view is not None:
            return view
    return None


class LearningLoop:
    """``router.learning_loop``: feedback, A/B tests and per-model reports, delegated to the
    router (and so to the gateway's ``feedback`` and ``ab-tests`` trackers)."""

    def __init__(self, router: MoERouter) -> None:
        self._router = router

    @property
    def enabled(self) -> bool:
        return self._router.enable_learning

    def collect_feedback(
        self,
        feedback: FeedbackData | Mapping[str, Any],
        routing_decision: RoutingDecision | None = None,
    ) -> dict[str, Any]:
        """Record feedback durably and learn from it; returns what was stored (with its score).

        Raises :class:`LearningDisabled` when the router was built with
        ``enable_learning=False``, and ``ValueError`` for feedback that judges nothing.

        :param routing_decision: the decision that routed the request: it names the model when
            the feedback does not.
        """
        if not isinstance(feedback, FeedbackData):
            feedback = FeedbackData.model_validate(dict(feedback))
        fields = feedback.feedback_fields()
        if "expert" not in fields and routing_decision is not None:
            fields["expert"] = routing_decision.experts[0]
        request_id = fields.pop("request_id")
        return self._router.record_feedback(request_id, **fields)

    def start_ab_test(
        self,
        model_a: str,
        model_b: str,
        task_type: TaskType | str | None = None,
        traffic_split: float = 0.5,
        min_samples: int = 30,
        duration_days: float = 7.0,
    ) -> str:
        """Start comparing two models on one task type (every task type when ``None``).

        :param traffic_split: the share of the task's traffic sent to ``model_a``.
        :returns: the test id, for :meth:`analyze_ab_test`.
        """
        return self._router.start_ab_test(
            model_a,
            model_b,
            task_type=_task(task_type),
            traffic_split=1.0 - traffic_split,  # the gateway's split is the share of expert_b
            min_samples=min_samples,
            duration_days=duration_days,
        )

    def analyze_ab_test(self, test_id: str) -> dict[str, Any]:
        """The gateway's analysis (per-arm figures, significance tests, ``winner``,
        ``recommendation``) plus ``test_id``, ``model_a`` and ``model_b``. ``confidence`` is
        1 - p of the test that decided, and 0.0 while nothing could be compared yet."""
        analysis = self._router.analyze_ab_test(test_id)
        return {
            **analysis,
            "test_id": analysis["id"],
            "model_a": analysis["expert_a"],
            "model_b": analysis["expert_b"],
            "confidence": analysis.get("confidence") or 0.0,
        }

    def stop_ab_test(self, test_id: str) -> dict[str, Any]:
        return self._router.stop_ab_test(test_id)

    def get_model_weight(self, model_id: str, task_type: TaskType | str | None = None) -> float:
        """What feedback taught about the model, 0..1 (0.5 neutral)."""
        return learned_score(learned_weight(self._router.moe.trackers, model_id, _task(task_type)))

    def get_model_performance_report(
        self, model_id: str, task_type: TaskType | str | None = None
    ) -> dict[str, Any]:
        """Calls and feedback figures of one model on one task type (all when ``None``).

        ``total_requests``, ``success_rate``, ``avg_cost`` and ``avg_latency_ms`` follow
        :meth:`PerformanceTrackerView.get_metrics` (calls first, else feedback; cost and
        latency ``None`` without calls); the rates of merged and reverted PRs, the average
        quality and rating come from feedback; ``learned_weight`` is :meth:`get_model_weight`.
        """
        task = _task(task_type)
        metrics = self._router.performance_tracker.get_metrics(model_id, task)
        summary = self._router.feedback_summary(model_id, task) or {}
        called = metrics.source == "calls"
        return {
            "model_id": model_id,
            "task_type": task or "all",
            "total_requests": metrics.total_requests,
            "source": metrics.source,
            "feedback": metrics.feedback_count,
            "success_rate": metrics.success_rate,
            "pr_merge_rate": summary.get("pr_merge_rate"),
            "pr_revert_rate": summary.get("pr_revert_rate"),
            "avg_cost": metrics.avg_cost if called else None,
            "avg_latency_ms": metrics.avg_latency_ms if called else None,
            "avg_quality": metrics.avg_quality,
            "avg_rating": metrics.avg_rating,
            "avg_feedback_score": summary.get("avg_score"),
            "learned_weight": round(self.get_model_weight(model_id, task), 4),
        }
