"""Sampling parameters that suit a task: precise for code and reasoning, loose for creative work,
and an answer length that grows with complexity.

Only parameters the caller left unset are tuned: an explicit ``temperature: 0`` is a decision the
gateway must respect. The gate puts the result in ``RoutingDecision.overrides``, which the
gateway applies to every expert call and reports in ``moe_metadata.overrides``.
"""

from __future__ import annotations

from typing import Any

from moe_core import ChatRequest
from moe_pollinations.classify import Classification

TUNED = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "max_tokens")

_PRESETS: dict[str, dict[str, float]] = {
    "code": {"temperature": 0.2, "top_p": 0.9, "frequency_penalty": 0.0},
    "reasoning": {"temperature": 0.3, "top_p": 0.85, "frequency_penalty": 0.1},
    "creative": {"temperature": 1.0, "top_p": 0.95, "presence_penalty": 0.6},
    "text": {"temperature": 0.7, "top_p": 1.0},
    "multimodal": {"temperature": 0.7, "top_p": 1.0},
    "speech": {"temperature": 0.7},
}


def tune(request: ChatRequest, verdict: Classification) -> dict[str, Any]:
    """The parameters to set for this request: the task's preset, adjusted for creativity and
    complexity, minus everything the caller already set."""
    params: dict[str, Any] = dict(_PRESETS.get(verdict.task_type, {}))
    if "temperature" in params and verdict.task_type in ("creative", "text", "multimodal"):
        # Very creative prompts get a little more randomness, capped well below 2.
        params["temperature"] = round(min(1.3, params["temperature"] + 0.3 * verdict.creativity), 2)
    if verdict.task_type not in ("image", "image_edit"):
        if verdict.complexity >= 0.7:
            params["max_tokens"] = 2000
        elif verdict.complexity >= 0.4:
            params["max_tokens"] = 1200
        else:
            params["max_tokens"] = 500
    unset = {key: value for key, value in params.items() if _unset(request, key)}
    return unset


def _unset(request: ChatRequest, key: str) -> bool:
    if key == "max_tokens":
        return request.output_limit is None
    return getattr(request, key, None) is None
