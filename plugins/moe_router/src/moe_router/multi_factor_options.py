"""The ``multi-factor`` gate's options: what each factor is worth and when to go parallel."""

from __future__ import annotations

from pydantic import Field

from moe_core.plugins import Options
from moe_router.cost import CHARS_PER_TOKEN, EXPECTED_OUTPUT_TOKENS


class Weights(Options):
    """Points each factor is worth (the defaults add up to 100)."""

    quality: float = Field(50, ge=0)
    cost: float = Field(20, ge=0)
    performance: float = Field(10, ge=0)
    learned: float = Field(7, ge=0)
    task_preference: float = Field(8, ge=0)
    diversity: float = Field(3, ge=0, description="For fallbacks and parallel sets")
    vendor_preference: float = Field(2, ge=0)


class MultiFactorOptions(Options):
    weights: Weights = Field(default_factory=Weights)
    quality_baseline: float = Field(
        0.5, ge=0, lt=1, description="Card quality worth no points (spreads the useful range)"
    )
    default_quality_requirement: float | None = Field(None, ge=0, le=1)
    high_quality_threshold: float = Field(0.9, ge=0, le=1)
    high_quality_cost_factor: float = Field(0.1, ge=0, le=1)
    fallbacks: int = Field(3, ge=0, le=10)
    parallel_experts: int = Field(3, ge=2, le=10)
    parallel_strategy: str = Field("judge", description="Combiner for parallel decisions")
    parallel_without_judge: str = Field(
        "quality-weighted", description="Combiner when no judge is available"
    )
    parallel_strategies: list[str] = Field(
        default_factory=lambda: [
            "judge",
            "parallel-vote",
            "quality-weighted",
            "first-success",
            "concat",
            "mixture-of-agents",
        ],
        description="Naming one of these in moe.strategy asks for parallel execution",
    )
    critical_task_types: list[str] = Field(
        default_factory=lambda: ["security_audit", "code_review", "planning", "reasoning"]
    )
    parallel_quality: float = Field(0.9, ge=0, le=1)
    parallel_min_budget_usd: float = Field(0.05, ge=0)
    task_capabilities: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "code_generation": ["code"],
            "code_review": ["code"],
            "debugging": ["code"],
            "refactoring": ["code"],
            "multimodal": ["vision"],
        },
        description="Abilities every candidate needs for a task type",
    )
    expected_output_tokens: dict[str, int] = Field(
        default_factory=lambda: dict(EXPECTED_OUTPUT_TOKENS)
    )
    chars_per_token: float = Field(CHARS_PER_TOKEN, gt=0)
