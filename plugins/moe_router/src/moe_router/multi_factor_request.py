"""What a request asks of the experts that may answer it, read once per decision.

The routing hints (``moe``) carry the task type, budget, quality and latency requirements; the
request itself says which abilities it needs (images need vision, ``tools`` need tool calling,
``response_format`` JSON mode, ``stream`` streaming); ``moe.metadata`` may add the seed's
``requires_tools`` / ``requires_vision`` / ``requires_json_mode`` flags, a list ``requires``,
``vendor_preference`` and ``critical``. Only the ``multi-factor`` gate reads this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moe_core.models import ChatRequest
from moe_router.cost import TokenEstimate, estimate_tokens

_FLAG_ABILITIES = {
    "requires_tools": "tools",
    "requires_vision": "vision",
    "requires_json_mode": "json",
    "requires_json": "json",
    "requires_streaming": "streaming",
    "requires_audio": "audio",
}
DEFAULT_TASK = "general"


@dataclass(frozen=True, slots=True)
class Requirements:
    task_type: str
    abilities: frozenset[str]
    """Capabilities and features every candidate needs (``code``, ``vision``, ``tools``...)."""
    quality_floor: float | None
    latency_ceiling_ms: float | None
    budget_usd: float | None
    vendors: frozenset[str]
    """Providers the caller prefers (``moe.metadata.vendor_preference``)."""
    critical: bool
    parallel_asked: bool
    """The caller asked for several experts (a multi-expert strategy or ``enable_parallel``)."""
    single_asked: bool
    """The caller named a single-expert strategy, which rules parallel execution out."""
    estimate: TokenEstimate
    counted: dict[str, TokenEstimate] = field(default_factory=dict)
    """The estimate per expert whose own tokenizer counted the prompt (see ``estimate_for``)."""

    def estimate_for(self, expert: str) -> TokenEstimate:
        """The prompt as ``expert`` counts it when it can, else the characters-based estimate."""
        return self.counted.get(expert, self.estimate)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "request",
            "task_type": self.task_type,
            "requires": sorted(self.abilities),
            "quality_floor": self.quality_floor,
            "latency_ceiling_ms": self.latency_ceiling_ms,
            "budget_usd": self.budget_usd,
            "vendor_preference": sorted(self.vendors),
            "input_tokens": self.estimate.input_tokens,
            "expected_output_tokens": self.estimate.output_expected,
            "token_estimate": self.estimate.source,
            **(
                {"counted_input_tokens": {n: e.input_tokens for n, e in self.counted.items()}}
                if self.counted
                else {}
            ),
        }


def read_requirements(
    request: ChatRequest,
    *,
    task_abilities: dict[str, list[str]],
    parallel_strategies: frozenset[str],
    default_quality: float | None,
    chars_per_token: float,
    expected_output: dict[str, int],
) -> Requirements:
    hints = request.hints
    metadata = hints.metadata
    task = hints.task_type or DEFAULT_TASK
    abilities = set(task_abilities.get(task, ()))
    if request.stream:
        abilities.add("streaming")
    extras = request.__pydantic_extra__
    if extras:
        if extras.get("tools"):
            abilities.add("tools")
        response_format = extras.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") in (
            "json_object",
            "json_schema",
        ):
            abilities.add("json")
    for message in request.messages:
        if isinstance(message.content, list):
            for part in message.content:
                if part.type == "image_url":
                    abilities.add("vision")
                elif part.type == "input_audio":
                    abilities.add("audio")
    if metadata:
        for flag, ability in _FLAG_ABILITIES.items():
            if metadata.get(flag) is True:
                abilities.add(ability)
        required = metadata.get("requires")
        if isinstance(required, list):
            abilities.update(str(item) for item in required)
    vendors = metadata.get("vendor_preference") if metadata else None
    if isinstance(vendors, str):
        vendors = [vendors]
    strategy = hints.strategy
    quality = hints.quality_requirement
    return Requirements(
        task_type=task,
        abilities=frozenset(abilities),
        quality_floor=default_quality if quality is None else quality,
        latency_ceiling_ms=hints.latency_requirement_ms,
        budget_usd=hints.budget_usd,
        vendors=frozenset(str(v) for v in vendors) if isinstance(vendors, list) else frozenset(),
        critical=bool(metadata) and metadata.get("critical") is True,
        parallel_asked=(strategy in parallel_strategies)
        or (bool(metadata) and metadata.get("enable_parallel") is True),
        single_asked=strategy is not None and strategy not in parallel_strategies,
        estimate=estimate_tokens(
            request, task, chars_per_token=chars_per_token, expected_output=expected_output
        ),
    )
