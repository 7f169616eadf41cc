"""How the ``multi-factor`` gate explains itself: evidence items, rationale, confidence, errors.

Evidence items are plain dicts with a ``kind`` (``request``, ``filtered``, ``score``, ``cost``,
``parallel``, ``experiment``) so they serialise as they are; the rationale is one paragraph a
person can read; the error for a request nothing can answer lists, filter by filter, which
expert it removed and why.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moe_router.multi_factor_profile import Candidate
    from moe_router.multi_factor_request import Requirements

FILTERS = (  # in the order they apply
    "disabled",
    "circuit open",
    "context window",
    "capabilities",
    "quality floor",
    "latency ceiling",
    "budget",
)
PARTS = ("quality", "cost", "performance", "learned", "task_preference", "vendor_preference")

Removed = dict[str, dict[str, Any]]
"""Filter name to the experts it removed, each with its value that failed (its window, quality,
p95 latency, cost; the abilities it lacks; the provider whose circuit is open)."""


def limit_of(which: str, needs: Requirements) -> Any:
    """What the request asked that a filter's experts did not meet."""
    if which == "capabilities":
        return sorted(needs.abilities)
    if which == "context window":
        return needs.estimate.input_tokens + needs.estimate.output_expected
    if which == "quality floor":
        return needs.quality_floor
    if which == "latency ceiling":
        return needs.latency_ceiling_ms
    if which == "budget":
        return needs.budget_usd
    return None


def describe(which: str, value: Any, needs: Requirements) -> str:
    """Why one filter removed one expert, in words."""
    if which == "disabled":
        return "disabled in its card"
    if which == "circuit open":
        return f"circuit open for {value}"
    if which == "capabilities":
        return f"lacks {', '.join(value)}"
    if which == "context window":
        return f"window {value} < {limit_of(which, needs)} tokens"
    if which == "quality floor":
        return f"quality {value:g} < {needs.quality_floor:g}"
    if which == "latency ceiling":
        return f"p95 {value:g} ms > {needs.latency_ceiling_ms:g} ms"
    limit = needs.estimate.output_limit
    if limit is not None:
        return f"max_tokens {limit} may cost ${value:.6f} > budget ${needs.budget_usd:.6f}"
    return f"expected ${value:.6f} > budget ${needs.budget_usd:.6f}"


def filtered_items(removed: Removed, needs: Requirements) -> list[dict[str, Any]]:
    """One evidence item per filter that removed anyone: the experts with their values."""
    items = []
    for which, experts in removed.items():
        item: dict[str, Any] = {
            "kind": "filtered",
            "filter": which,
            "limit": limit_of(which, needs),
            "experts": experts,
        }
        if which == "budget":
            item["basis"] = (
                "expected cost"
                if needs.estimate.output_limit is None
                else (f"longest answer at max_tokens {needs.estimate.output_limit}")
            )
        items.append(item)
    return items


def score_item(candidate: Candidate) -> dict[str, Any]:
    return {
        "kind": "score",
        "expert": candidate.profile.name,
        "provider": candidate.profile.provider,
        "total": round(candidate.total, 2),
        "parts": {
            part: round(value, 3) for part, value in zip(PARTS, candidate.parts, strict=True)
        },
    }


def confidence(top: Candidate, runner_up: Candidate | None) -> float:
    """How clearly the top expert beat the next: 0.5 for a tie, about 0.96 for 10 points."""
    if runner_up is None:
        return 1.0
    return round(1 / (1 + math.exp(-(top.total - runner_up.total) / 3)), 4)


def rationale(
    top: Candidate,
    needs: Requirements,
    expected_usd: float,
    runner_up: Candidate | None,
    removed: Removed,
    notes: list[str],
    latency_ms: float | None,
) -> str:
    """One paragraph: the pick and its reasons, its score against the runner-up's, how many
    experts each filter removed, and the notes (budget cap, A/B test, parallel skipped)."""
    p = top.profile
    reasons = [f"quality {p.quality:g}", f"estimated cost ${expected_usd:.6f}"]
    if needs.abilities:
        reasons.append(f"supports {', '.join(sorted(needs.abilities))}")
    if p.card.context_window is not None and needs.estimate.input_tokens > 32_000:
        reasons.append(f"{p.card.context_window:,}-token context window")
    if needs.latency_ceiling_ms is not None and latency_ms is not None:
        reasons.append(f"p95 latency {latency_ms:g} ms")
    preference = p.card.task_preferences.get(needs.task_type, 0.0)
    if preference >= 1:
        reasons.append(f"preferred for {needs.task_type}")
    elif preference > 0:
        reasons.append(f"a budget choice for {needs.task_type}")
    if p.provider in needs.vendors:
        reasons.append(f"preferred vendor {p.provider}")
    text = (
        f"Selected {p.name} for {needs.task_type} based on: {', '.join(reasons)}. "
        f"Overall score: {top.total:.1f}/100"
    )
    if runner_up is not None:
        text += f" (runner-up {runner_up.profile.name}: {runner_up.total:.1f})"
    text += "."
    if removed:
        total = sum(len(experts) for experts in removed.values())
        text += f" Filtered out {total}: " + ", ".join(
            f"{which} {len(removed[which])}" for which in FILTERS if which in removed
        )
        text += "."
    if notes:
        text += " " + sentence(notes)
    return text


def sentence(notes: list[str]) -> str:
    """Notes joined into one sentence that starts with a capital and ends with a full stop."""
    text = "; ".join(notes)
    return text[:1].upper() + text[1:] + "."


def nothing_left(removed: Removed, needs: Requirements, total: int) -> str:
    """The message of the error for a request no expert passed: every removal, by filter."""
    parts = [
        f"{which}: "
        + ", ".join(
            f"{name} ({describe(which, value, needs)})" for name, value in removed[which].items()
        )
        for which in FILTERS
        if which in removed
    ]
    return f"No expert meets this request's requirements ({total} considered). " + "; ".join(parts)
