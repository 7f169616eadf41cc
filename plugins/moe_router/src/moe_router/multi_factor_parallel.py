"""When the ``multi-factor`` gate asks several experts at once, which ones, and the judge.

The seed's triggers decide: the caller asked (a multi-expert ``moe.strategy`` or
``metadata.enable_parallel``), the task type is critical, a high quality requirement comes with
enough budget, or ``metadata.critical`` is set. The set is the best expert plus the best of other
providers; the judge is the highest-quality remaining expert that can take the call, whatever
the request's filters say of it (it judges, it does not answer). With a budget, the answers and
the verdict together must fit it, and their length is capped so that they do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from moe_core.models import RoutingDecision
from moe_router import multi_factor_explain as explain
from moe_router.cost import predict_cost
from moe_router.multi_factor_options import MultiFactorOptions
from moe_router.multi_factor_profile import Candidate, Profile
from moe_router.multi_factor_request import Requirements

JUDGE_OUTPUT_TOKENS = 200
"""The judge combiner asks its judge for at most this many tokens."""
JUDGE_TEMPLATE_TOKENS = 100
"""The judge's instructions around the question and the candidate answers."""

Diverse = Callable[..., list[Candidate]]


def parallel_triggers(needs: Requirements, options: MultiFactorOptions) -> list[str]:
    """Why this request should be answered by several experts (empty: it should not)."""
    if needs.single_asked:
        return []
    triggers = []
    if needs.parallel_asked:
        triggers.append("the request asked for parallel execution")
    if needs.task_type in options.critical_task_types:
        triggers.append(f"task type {needs.task_type} is critical")
    floor, budget = needs.quality_floor, needs.budget_usd
    if (
        floor is not None
        and floor >= options.parallel_quality
        and budget is not None
        and budget >= options.parallel_min_budget_usd
    ):
        triggers.append(
            f"quality requirement {floor:g} >= {options.parallel_quality:g} with budget "
            f"${budget:g} >= ${options.parallel_min_budget_usd:g}"
        )
    if needs.critical:
        triggers.append("moe.metadata.critical is true")
    return triggers


def parallel_decision(
    gate: str,
    options: MultiFactorOptions,
    ranked: list[Candidate],
    usable: list[Profile],
    needs: Requirements,
    triggers: list[str],
    evidence: list[Any],
    notes: list[str],
    diverse: Diverse,
) -> RoutingDecision | None:
    """Several provider-diverse experts and a judge, or None when the budget forbids it (said
    in ``notes``)."""
    chosen = diverse(
        ranked[1:], {ranked[0].profile.provider}, options.parallel_experts - 1, strict=True
    )
    chosen.insert(0, ranked[0])
    names = [c.profile.name for c in chosen]
    judges = [p for p in usable if p.name not in names]
    judge = max(judges, key=lambda p: (p.quality, -p.per_out)) if judges else None
    estimate = needs.estimate
    outputs = [estimate.output_for(c.profile.max_output) for c in chosen]
    total = sum(c.expected_usd for c in chosen)
    if judge is not None:
        judge_in = estimate.input_tokens + JUDGE_TEMPLATE_TOKENS + sum(outputs)
        total += judge_in * judge.per_in + JUDGE_OUTPUT_TOKENS * judge.per_out
    budget = needs.budget_usd
    overrides: dict[str, Any] = {}
    if budget is not None:
        skipped = None
        if total > budget:
            skipped = (
                f"parallel execution skipped: {len(chosen)} experts and a judge would cost "
                f"${total:.6f} > budget ${budget:.6f}"
            )
        elif estimate.output_limit is None:
            cap = parallel_cap(chosen, judge, needs)
            if cap < max(outputs):
                skipped = "parallel execution skipped: the budget leaves too short answers"
            overrides["max_tokens"] = cap
        if skipped is not None:
            notes.append(skipped)
            evidence.append({"kind": "parallel", "triggers": triggers, "applied": False})
            return None
    expected_quality = max(c.profile.quality for c in chosen)
    strategy = options.parallel_strategy if judge is not None else options.parallel_without_judge
    evidence.append(
        {
            "kind": "parallel",
            "triggers": triggers,
            "applied": True,
            "experts": names,
            "providers": [c.profile.provider for c in chosen],
            "judge": None if judge is None else judge.name,
            "strategy": strategy,
            "expected_quality": expected_quality,
            "estimated_cost_usd": round(total, 8),
        }
    )
    evidence.extend(explain.score_item(c) for c in chosen)
    for candidate in chosen:
        card = candidate.profile.card
        prediction = predict_cost(
            card.cost_per_1k_input,
            card.cost_per_1k_output,
            card.max_output_tokens,
            estimate,
            budget,
            output_cap=overrides.get("max_tokens"),
        )
        evidence.append(prediction.evidence(candidate.profile.name))
    judged = (
        f"Judge {judge.name} (quality {judge.quality:g}) picks the best answer."
        if judge is not None
        else f"No judge available: {strategy} merges the answers."
    )
    rationale = (
        f"Parallel execution with {len(chosen)} experts ({', '.join(names)}) for "
        f"{needs.task_type} because {'; '.join(triggers)}: expected quality "
        f"{expected_quality:g} at an estimated ${total:.6f}. {judged}"
    )
    if notes:
        rationale += " " + explain.sentence(notes)
    return RoutingDecision.model_construct(
        experts=names,
        strategy=strategy,
        fallbacks=[],
        gate=gate,
        confidence=explain.confidence(ranked[0], ranked[1] if len(ranked) > 1 else None),
        rationale=rationale,
        runner_up=None,
        scores={c.profile.name: c.total for c in ranked},
        evidence=evidence,
        overrides=overrides,
        judge=None if judge is None else judge.name,
    )


def parallel_cap(chosen: list[Candidate], judge: Profile | None, needs: Requirements) -> int:
    """The largest ``max_tokens`` for which every answer and the judge's verdict, at their
    longest, stay within the budget together."""
    estimate = needs.estimate
    prompt_tokens = estimate.charged_prompt_tokens
    fixed = sum(prompt_tokens * c.profile.per_in for c in chosen)
    per_token = sum(c.profile.per_out for c in chosen)
    if judge is not None:
        # The judge reads the question and every answer, and writes a short verdict.
        fixed += (prompt_tokens + JUDGE_TEMPLATE_TOKENS) * judge.per_in
        fixed += JUDGE_OUTPUT_TOKENS * judge.per_out
        per_token += len(chosen) * judge.per_in
    assert needs.budget_usd is not None
    if per_token == 0:
        return max(estimate.output_for(c.profile.max_output) for c in chosen)
    return max(0, math.floor((needs.budget_usd - fixed) / per_token * (1 - 1e-9)))
