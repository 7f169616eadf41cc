"""The model router: a registry of models, cost prediction, the multi-factor gate, consensus
strategies over several experts, and ``MoERouter``, a blocking Python API over a gateway."""

from moe_router.learning import (
    FeedbackData,
    LearningDisabled,
    LearningLoop,
    PerformanceMetrics,
    PerformanceTrackerView,
)
from moe_router.router import MoERouter, RoutingRequest
from moe_router.selection import CostEstimate, CostPredictor, ModelCard, ModelDecision, TaskType

__all__ = [
    "CostEstimate",
    "CostPredictor",
    "FeedbackData",
    "LearningDisabled",
    "LearningLoop",
    "MoERouter",
    "ModelCard",
    "ModelDecision",
    "PerformanceMetrics",
    "PerformanceTrackerView",
    "RoutingRequest",
    "TaskType",
]
