"""The ``multi-factor`` gate: filter, score, select, validate, and say why at every step.

1. **Filter**: an expert is removed when it is disabled, its provider's circuit is open, it lacks
   an ability the request needs, the prompt and answer do not fit its context window, its quality
   is below the request's floor, its p95 latency is above the ceiling, or its expected cost is
   above the budget. When none is left, the error names which filter removed which expert.
2. **Score** (points out of 100 with the default weights): quality, cost efficiency (cheapest
   candidate full points, the dearest none, on a log scale), performance history, learned weight,
   task preference, vendor preference; provider diversity counts when fallbacks and parallel
   sets are picked. A request whose quality requirement is at least ``high_quality_threshold``
   ranks for quality: cost counts only ``high_quality_cost_factor`` of its weight.
3. **Select**: the best expert and, from other providers first, the next best as fallbacks; or,
   when the seed's triggers fire, three provider-diverse experts plus a judge.
4. **Validate**: the cost prediction of what was chosen, and when a budget is set and the caller
   gave no ``max_tokens``, a ``max_tokens`` that keeps even the longest answer within it.

A running A/B test (an :class:`~moe_core.signals.ExperimentSignal` tracker) overrides the pick
when its expert passed the filters, and the decision says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from moe_core.builtins import multi_factor_explain as explain
from moe_core.builtins.multi_factor_explain import Removed
from moe_core.builtins.multi_factor_request import Requirements, read_requirements
from moe_core.cost import (
    CHARS_PER_TOKEN,
    EXPECTED_OUTPUT_TOKENS,
    budget_output_cap,
    predict_cost,
)
from moe_core.errors import NoEligibleExpert
from moe_core.models import ChatRequest, ExpertCard, RoutingDecision
from moe_core.parts import Gate, Tracker
from moe_core.plugins import Options
from moe_core.signals import (
    BreakerSignal,
    ExperimentSignal,
    PerformanceSignal,
    WeightSignal,
    find_signals,
)

JUDGE_OUTPUT_TOKENS = 200
"""The judge combiner asks its judge for at most this many tokens."""
_CHEAPEST_USD = 1e-7
"""Free models are priced at this for the log scale of cost efficiency."""


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


@dataclass(slots=True, eq=False)
class _Profile:
    """What the gate needs of a card, computed once per card."""

    name: str
    card: ExpertCard
    provider: str
    abilities: frozenset[str]
    quality: float
    quality_points: float
    per_in: float
    per_out: float
    latency_ms: float | None
    enabled: bool
    max_output: int | None
    window: int | None
    preferences: dict[str, float]


@dataclass(slots=True, eq=False)
class _Candidate:
    profile: _Profile
    expected_usd: float
    parts: tuple[float, ...] = ()
    total: float = 0.0


@dataclass(slots=True)
class _Signals:
    breakers: list[BreakerSignal]
    performance: list[PerformanceSignal]
    weights: list[WeightSignal]
    experiments: list[ExperimentSignal]


class MultiFactorGate(Gate):
    """Picks experts by quality, cost, latency, abilities and history, with an evidence trail."""

    options: MultiFactorOptions

    def __init__(self, name: str, options: MultiFactorOptions) -> None:
        super().__init__(name, options)
        self._profiles: dict[str, _Profile] = {}
        self._last_profiles: list[_Profile] = []
        self._signals_of: Mapping[str, Tracker] | None = None
        self._signals = _Signals([], [], [], [])
        self._parallel_strategies = frozenset(options.parallel_strategies)
        self._critical = frozenset(options.critical_task_types)

    # -- per-card and per-tracker work done once ------------------------------------------

    def _profile(self, name: str, card: ExpertCard) -> _Profile:
        profile = self._profiles.get(name)
        if profile is not None and profile.card is card:
            return profile
        abilities = set(card.capabilities) | set(card.modalities_in)
        for flag, ability in (
            (card.supports_streaming, "streaming"),
            (card.supports_tools, "tools"),
            (card.supports_vision or "image" in card.modalities_in, "vision"),
            (card.supports_json, "json"),
        ):
            if flag:
                abilities.add(ability)
        quality = 0.5 if card.quality is None else card.quality
        baseline = self.options.quality_baseline
        profile = _Profile(
            name=name,
            card=card,
            provider=card.provider,
            abilities=frozenset(abilities),
            quality=quality,
            quality_points=max(0.0, (quality - baseline) / (1 - baseline)),
            per_in=card.cost_per_1k_input / 1000,
            per_out=card.cost_per_1k_output / 1000,
            latency_ms=card.latency_p95_ms
            if card.latency_p95_ms is not None
            else card.latency_p50_ms,
            enabled=card.enabled,
            max_output=card.max_output_tokens,
            window=card.context_window,
            preferences=card.task_preferences,
        )
        self._profiles[name] = profile
        return profile

    def _profiles_for(self, experts: Mapping[str, ExpertCard]) -> list[_Profile]:
        """The profiles of ``experts``, reused while the cards are the same objects."""
        cached = self._last_profiles
        if len(cached) == len(experts):
            for profile, (name, card) in zip(cached, experts.items(), strict=True):
                if profile.card is not card or profile.name != name:
                    break
            else:
                return cached
        self._last_profiles = [self._profile(name, card) for name, card in experts.items()]
        return self._last_profiles

    def _signals_from(self, signals: Mapping[str, Tracker]) -> _Signals:
        if signals is not self._signals_of:
            self._signals = _Signals(
                list(find_signals(signals, BreakerSignal)),
                list(find_signals(signals, PerformanceSignal)),
                list(find_signals(signals, WeightSignal)),
                list(find_signals(signals, ExperimentSignal)),
            )
            self._signals_of = signals
        return self._signals

    # -- the decision -----------------------------------------------------------------------

    async def route(
        self,
        request: ChatRequest,
        experts: Mapping[str, ExpertCard],
        signals: Mapping[str, Tracker],
    ) -> RoutingDecision:
        options = self.options
        needs = read_requirements(
            request,
            task_abilities=options.task_capabilities,
            parallel_strategies=self._parallel_strategies,
            default_quality=options.default_quality_requirement,
            chars_per_token=options.chars_per_token,
            expected_output=options.expected_output_tokens,
        )
        found = self._signals_from(signals)
        profiles = self._profiles_for(experts)
        candidates, removed, usable = self._filter(profiles, needs, found)
        if not candidates:
            raise NoEligibleExpert(explain.nothing_left(removed, needs, len(profiles)), param="moe")
        self._score(candidates, needs, found)
        candidates.sort(key=lambda c: c.total, reverse=True)
        return self._select(candidates, removed, usable, needs, found, request)

    def _filter(
        self, profiles: list[_Profile], needs: Requirements, found: _Signals
    ) -> tuple[list[_Candidate], Removed, list[_Profile]]:
        """Candidates that pass every filter, what each filter removed (expert to its value),
        and the experts that could at least be called (enabled, circuit closed, big enough):
        possible judges."""
        estimate = needs.estimate
        floor, ceiling, budget = needs.quality_floor, needs.latency_ceiling_ms, needs.budget_usd
        abilities = needs.abilities
        prompt, usual = estimate.input_tokens, estimate.output_expected
        limit = estimate.output_limit
        charged = estimate.charged_prompt_tokens
        breakers = found.breakers
        candidates: list[_Candidate] = []
        removed: Removed = {}
        usable: list[_Profile] = []
        open_providers: dict[str, bool] = {}
        for p in profiles:
            name = p.name
            if not p.enabled:
                removed.setdefault("disabled", {})[name] = False
                continue
            if breakers:
                provider = p.provider
                blocked = open_providers.get(provider)
                if blocked is None:
                    blocked = False
                    for breaker in breakers:
                        if breaker.circuit_open(provider):
                            blocked = True
                            break
                    open_providers[provider] = blocked
                if blocked:
                    removed.setdefault("circuit open", {})[name] = provider
                    continue
                for breaker in breakers:
                    if breaker.circuit_open(name):
                        blocked = True
                        break
                if blocked:
                    removed.setdefault("circuit open", {})[name] = name
                    continue
            output = p.max_output if p.max_output is not None and p.max_output < usual else usual
            if p.window is not None and prompt + output > p.window:
                removed.setdefault("context window", {})[name] = p.window
                continue
            usable.append(p)
            if abilities and not abilities <= p.abilities:
                removed.setdefault("capabilities", {})[name] = sorted(abilities - p.abilities)
                continue
            if floor is not None and p.quality < floor:
                removed.setdefault("quality floor", {})[name] = p.quality
                continue
            if ceiling is not None and p.latency_ms is not None and p.latency_ms > ceiling:
                removed.setdefault("latency ceiling", {})[name] = p.latency_ms
                continue
            expected = prompt * p.per_in + output * p.per_out
            if budget is not None:
                # With the caller's max_tokens the longest answer must fit (the gateway checks
                # that before each call); without, the gate caps it, so the expected cost must.
                cost = expected if limit is None else charged * p.per_in + limit * p.per_out
                if cost > budget:
                    removed.setdefault("budget", {})[name] = round(cost, 8)
                    continue
            candidates.append(_Candidate(p, expected))
        return candidates, removed, usable

    def _score(self, candidates: list[_Candidate], needs: Requirements, found: _Signals) -> None:
        weights = self.options.weights
        w_quality, w_performance, w_learned = weights.quality, weights.performance, weights.learned
        w_preference, w_vendor = weights.task_preference, weights.vendor_preference
        cost_weight = weights.cost
        floor = needs.quality_floor
        if floor is not None and floor >= self.options.high_quality_threshold:
            cost_weight *= self.options.high_quality_cost_factor
        log = math.log
        logs = [
            log(c.expected_usd if c.expected_usd > _CHEAPEST_USD else _CHEAPEST_USD)
            for c in candidates
        ]
        dearest = max(logs)
        spread = dearest - min(logs)
        cost_per_log = cost_weight / spread if spread > 1e-9 else 0.0
        task, vendors = needs.task_type, needs.vendors
        history_sources, weight_sources = found.performance, found.weights
        for candidate, log_cost in zip(candidates, logs, strict=True):
            p = candidate.profile
            cost = cost_weight if cost_per_log == 0.0 else (dearest - log_cost) * cost_per_log
            history = 0.5
            for tracker in history_sources:
                view = tracker.performance(p.name, task)
                if view is not None:
                    history = view.confidence * view.success_rate + (1 - view.confidence) * 0.5
                    break
            learned = 1.0
            for tracker in weight_sources:
                learned *= tracker.learned_weight(p.name, task)
            learned = 0.0 if learned < 0 else 1.0 if learned > 2 else learned / 2
            parts = (
                w_quality * p.quality_points,
                cost,
                w_performance * history,
                w_learned * learned,
                w_preference * p.preferences.get(task, 0.0),
                w_vendor if p.provider in vendors else 0.0,
            )
            candidate.parts = parts
            candidate.total = parts[0] + parts[1] + parts[2] + parts[3] + parts[4] + parts[5]

    # -- selection and validation -----------------------------------------------------------

    def _select(
        self,
        ranked: list[_Candidate],
        removed: Removed,
        usable: list[_Profile],
        needs: Requirements,
        found: _Signals,
        request: ChatRequest,
    ) -> RoutingDecision:
        evidence: list[Any] = [needs.summary()]
        evidence.extend(explain.filtered_items(removed, needs))
        notes: list[str] = []
        floor = needs.quality_floor
        if floor is not None and floor >= self.options.high_quality_threshold:
            notes.append(
                f"quality requirement {floor:g} ranks for quality (cost counts "
                f"{self.options.high_quality_cost_factor:.0%} of its weight)"
            )
        experiment = self._experiment(ranked, request, needs, found, evidence, notes)
        if experiment is not None:
            ranked = [experiment, *(c for c in ranked if c is not experiment)]

        triggers = [] if experiment is not None else self._parallel_triggers(needs)
        if triggers and len(ranked) > 1:
            decision = self._parallel(ranked, usable, needs, triggers, evidence, notes)
            if decision is not None:
                return decision
        elif triggers:
            notes.append(f"parallel execution wanted ({triggers[0]}) but only one expert passed")

        top = ranked[0]
        budget = needs.budget_usd
        cap = None
        overrides: dict[str, Any] = {}
        estimate = needs.estimate
        card = top.profile.card
        if budget is not None and estimate.output_limit is None and top.profile.per_out:
            room = budget_output_cap(
                card.cost_per_1k_input, card.cost_per_1k_output, estimate, budget
            )
            if room < estimate.output_max(card.max_output_tokens):
                cap = room
                overrides["max_tokens"] = cap
                notes.append(f"max_tokens {cap} keeps the longest answer within the budget")
        fallbacks = self._diverse(ranked[1:], {top.profile.provider}, self.options.fallbacks)
        if budget is not None:
            fallbacks = [c for c in fallbacks if self._worst(c.profile, needs, cap) <= budget]
        prediction = predict_cost(
            card.cost_per_1k_input,
            card.cost_per_1k_output,
            card.max_output_tokens,
            estimate,
            budget,
            output_cap=cap,
        )
        evidence.extend(explain.score_item(c) for c in (top, *fallbacks))
        evidence.append(prediction.evidence(top.profile.name))
        runner_up = ranked[1] if len(ranked) > 1 else None
        rationale = explain.rationale(
            top, needs, prediction.expected_usd, runner_up, removed, notes
        )
        confidence = 0.5 if experiment is not None else explain.confidence(top, runner_up)
        return RoutingDecision.model_construct(
            experts=[top.profile.name],
            strategy=None,
            fallbacks=[c.profile.name for c in fallbacks],
            gate=self.name,
            confidence=confidence,
            rationale=rationale,
            runner_up=None if runner_up is None else runner_up.profile.name,
            scores={c.profile.name: c.total for c in ranked},
            evidence=evidence,
            overrides=overrides,
            judge=None,
        )

    def _worst(self, p: _Profile, needs: Requirements, cap: int | None) -> float:
        """What the budget check before a call charges for this expert."""
        estimate = needs.estimate
        output = estimate.output_max(p.card.max_output_tokens, cap)
        return estimate.charged_prompt_tokens * p.per_in + output * p.per_out

    def _diverse(
        self, ranked: list[_Candidate], providers: set[str], count: int, *, strict: bool = False
    ) -> list[_Candidate]:
        """The ``count`` best of ``ranked``, a new provider worth the diversity weight (or, with
        ``strict``, always first: a parallel set asks as many providers as it can)."""
        bonus = 1e9 if strict else self.options.weights.diversity
        chosen: list[_Candidate] = []
        seen = set(providers)
        pool = list(ranked)
        if not strict and len(pool) > count:
            # While fewer than ``count`` are chosen, one of the ``count`` best is still in the
            # pool, so nothing scoring more than the bonus below the count-th best can win.
            reachable = ranked[count - 1].total - bonus
            pool = [c for c in pool if c.total >= reachable]
        while pool and len(chosen) < count:
            best = max(
                pool, key=lambda c: c.total + (bonus if c.profile.provider not in seen else 0.0)
            )
            pool.remove(best)
            chosen.append(best)
            seen.add(best.profile.provider)
        return chosen

    def _experiment(
        self,
        ranked: list[_Candidate],
        request: ChatRequest,
        needs: Requirements,
        found: _Signals,
        evidence: list[Any],
        notes: list[str],
    ) -> _Candidate | None:
        for tracker in found.experiments:
            assigned = tracker.assignment(request, needs.task_type)
            if assigned is None:
                continue
            item = {
                "kind": "experiment",
                "assigned": assigned,
                "top_scored": ranked[0].profile.name,
            }
            match = next((c for c in ranked if c.profile.name == assigned), None)
            item["applied"] = match is not None
            evidence.append(item)
            if match is None:
                notes.append(f"an A/B test assigned {assigned}, which did not pass the filters")
                return None
            notes.append(f"an A/B test assigned this request to {assigned}")
            return match
        return None

    def _parallel_triggers(self, needs: Requirements) -> list[str]:
        if needs.single_asked:
            return []
        triggers = []
        if needs.parallel_asked:
            triggers.append("the request asked for parallel execution")
        if needs.task_type in self._critical:
            triggers.append(f"task type {needs.task_type} is critical")
        floor, budget = needs.quality_floor, needs.budget_usd
        options = self.options
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

    def _parallel(
        self,
        ranked: list[_Candidate],
        usable: list[_Profile],
        needs: Requirements,
        triggers: list[str],
        evidence: list[Any],
        notes: list[str],
    ) -> RoutingDecision | None:
        """Several provider-diverse experts and a judge, or None when the budget forbids it."""
        options = self.options
        chosen = self._diverse(
            ranked[1:], {ranked[0].profile.provider}, options.parallel_experts - 1, strict=True
        )
        chosen.insert(0, ranked[0])
        names = {c.profile.name for c in chosen}
        judges = [p for p in usable if p.name not in names]
        judge = max(judges, key=lambda p: (p.quality, -p.per_out)) if judges else None
        estimate = needs.estimate
        outputs = [estimate.output_for(c.profile.card.max_output_tokens) for c in chosen]
        total = sum(c.expected_usd for c in chosen)
        judge_usd = 0.0
        if judge is not None:
            judge_in = estimate.input_tokens + sum(outputs)
            judge_usd = judge_in * judge.per_in + JUDGE_OUTPUT_TOKENS * judge.per_out
        budget = needs.budget_usd
        overrides: dict[str, Any] = {}
        if budget is not None:
            if total + judge_usd > budget:
                notes.append(
                    f"parallel execution skipped: {len(chosen)} experts and a judge would cost "
                    f"${total + judge_usd:.6f} > budget ${budget:.6f}"
                )
                evidence.append({"kind": "parallel", "triggers": triggers, "applied": False})
                return None
            if estimate.output_limit is None:
                cap = self._parallel_cap(chosen, judge, needs)
                if cap < max(outputs):
                    notes.append("parallel execution skipped: the budget leaves too short answers")
                    evidence.append({"kind": "parallel", "triggers": triggers, "applied": False})
                    return None
                overrides["max_tokens"] = cap
        names_list = [c.profile.name for c in chosen]
        expected_quality = max(c.profile.quality for c in chosen)
        strategy = (
            options.parallel_strategy if judge is not None else options.parallel_without_judge
        )
        evidence.append(
            {
                "kind": "parallel",
                "triggers": triggers,
                "applied": True,
                "experts": names_list,
                "providers": [c.profile.provider for c in chosen],
                "judge": None if judge is None else judge.name,
                "strategy": strategy,
                "expected_quality": expected_quality,
                "estimated_cost_usd": round(total + judge_usd, 8),
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
            f"Parallel execution with {len(chosen)} experts ({', '.join(names_list)}) for "
            f"{needs.task_type} because {'; '.join(triggers)}: expected quality "
            f"{expected_quality:g} at an estimated ${total + judge_usd:.6f}. {judged}"
        )
        if notes:
            rationale += " " + "; ".join(notes) + "."
        return RoutingDecision.model_construct(
            experts=names_list,
            strategy=strategy,
            fallbacks=[],
            gate=self.name,
            confidence=explain.confidence(ranked[0], ranked[1] if len(ranked) > 1 else None),
            rationale=rationale,
            runner_up=None,
            scores={c.profile.name: c.total for c in ranked},
            evidence=evidence,
            overrides=overrides,
            judge=None if judge is None else judge.name,
        )

    def _parallel_cap(
        self, chosen: list[_Candidate], judge: _Profile | None, needs: Requirements
    ) -> int:
        """The largest ``max_tokens`` for which every answer and the judge's verdict, at their
        longest, stay within the budget together."""
        estimate = needs.estimate
        prompt_tokens = estimate.charged_prompt_tokens
        fixed = sum(prompt_tokens * c.profile.per_in for c in chosen)
        per_token = sum(c.profile.per_out for c in chosen)
        if judge is not None:
            # The judge reads the question and every answer, and writes a short verdict.
            fixed += prompt_tokens * judge.per_in + JUDGE_OUTPUT_TOKENS * judge.per_out
            per_token += len(chosen) * judge.per_in
        assert needs.budget_usd is not None
        if per_token == 0:
            return max(estimate.output_for(c.profile.card.max_output_tokens) for c in chosen)
        return max(0, math.floor((needs.budget_usd - fixed) / per_token * (1 - 1e-9)))
